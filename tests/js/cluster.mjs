#!/usr/bin/env node
// fal's JS client (@fal-ai/client, latest 1.x) against several thorgen nodes of one cluster: job i is
// submitted through node i % N (its proxy route), followed and fetched through the next node, so
// every job's status and result come from a node other than the one that took it.
//
//   node cluster.mjs <endpoint> <input_json> <jobs> <base_url> [<base_url> ...]
//
// Prints one JSON line per job: {"request_id", "submitted_to", "read_from", "data"}; exits 1 on an error.

const [endpoint, inputJson, jobsArg, ...bases] = process.argv.slice(2);
if (!endpoint || !inputJson || !jobsArg || bases.length === 0) {
  console.error("usage: node cluster.mjs <endpoint> <input_json> <jobs> <base_url> [<base_url> ...]");
  process.exit(64);
}
const { createFalClient } = await import("fal-client-latest");
const clients = bases.map((base) =>
  createFalClient({ credentials: "local", proxyUrl: { url: `${base.replace(/\/+$/, "")}/api/fal/proxy`, when: "always" } }),
);
const input = JSON.parse(inputJson);

try {
  const jobs = await Promise.all(
    Array.from({ length: Number(jobsArg) }, async (_, index) => {
      const submitTo = index % bases.length;
      const readFrom = (index + 1) % bases.length;
      const { request_id: requestId } = await clients[submitTo].queue.submit(endpoint, { input });
      await clients[readFrom].queue.subscribeToStatus(endpoint, { requestId, mode: "polling", pollInterval: 100 });
      const result = await clients[readFrom].queue.result(endpoint, { requestId });
      return { request_id: requestId, submitted_to: bases[submitTo], read_from: bases[readFrom], data: result.data };
    }),
  );
  for (const job of jobs) {
    process.stdout.write(`${JSON.stringify(job)}\n`);
  }
} catch (error) {
  console.error(error?.stack || String(error), error?.body ? JSON.stringify(error.body) : "");
  process.exit(1);
}
