// The jobs panel: every client's recent jobs from /console/api/jobs, newest first. A row is rebuilt
// only when what it shows changed, so a playing <video> in a finished job is not reset every poll.
import { api, el, seconds } from "./api.js";
import { renderOutput } from "./output.js";

const rows = new Map(); // job id -> { signature, node }

function duration(job) {
  const end = job.finished_at ?? Date.now() / 1000;
  if (job.started_at) return seconds(end - job.started_at);
  return seconds(end - job.created_at);
}

function state(job) {
  if (job.state !== "COMPLETED") return job.state === "IN_QUEUE" ? "queued" : "running";
  if (job.error_type === "request_cancelled") return "cancelled";
  return job.error_status ? "failed" : "done";
}

function errorText(error) {
  if (Array.isArray(error)) {
    return error.map((item) => `${(item.loc || []).slice(1).join(".") || "body"}: ${item.msg}`).join("; ");
  }
  return typeof error === "string" ? error : JSON.stringify(error);
}

async function cancel(job, button) {
  button.disabled = true;
  button.textContent = "Cancelling…";
  try {
    await api(`/queue/${job.endpoint_id}/requests/${job.id}/cancel`, { method: "PUT" });
  } catch (error) {
    if (error.status !== 400) { button.disabled = false; button.textContent = "Cancel"; throw error; }
  }
}

function row(job) {
  const label = state(job);
  const head = el("div", { class: "job-head" },
    el("span", { class: `state ${label}` }, label),
    el("code", { class: "endpoint" }, job.endpoint_id),
    el("span", { class: "muted small" }, `${job.lane} · ${duration(job)}`),
    job.queue_position !== null && job.state === "IN_QUEUE"
      ? el("span", { class: "muted small" }, `position ${job.queue_position}`) : null);
  const parts = [head, el("span", { class: "muted small id" }, job.id)];
  if (job.state === "IN_PROGRESS" && job.progress) {
    parts.push(el("div", { class: "progress-line" },
      el("progress", { max: String(job.progress.total), value: String(job.progress.done),
                       "aria-label": `${job.endpoint_id} progress` }),
      el("span", { class: "small" }, ` ${job.progress.what} ${job.progress.done}/${job.progress.total}`)));
  }
  if (job.state !== "COMPLETED") {
    const button = el("button", { type: "button", class: "quiet cancel",
                                  "aria-label": `Cancel ${job.endpoint_id} ${job.id}` },
      job.cancel_requested ? "Cancelling…" : "Cancel");
    button.disabled = job.cancel_requested;
    button.addEventListener("click", () => cancel(job, button).catch((error) => console.warn(error)));
    head.append(button);
  }
  if (job.error !== null && job.error !== undefined) parts.push(el("p", { class: "error" }, errorText(job.error)));
  if (job.output) parts.push(renderOutput(job.output, { compact: true }));
  return el("li", { class: "job", "data-job": job.id, "data-state": label }, ...parts);
}

export async function refreshJobs() {
  const answer = await api("/console/api/jobs?limit=50");
  const list = document.getElementById("jobs");
  const seen = new Set();
  let previous = null;
  for (const job of answer.jobs) {
    seen.add(job.id);
    // Running rows change every poll anyway (duration); finished rows only when first finished.
    const signature = JSON.stringify([job.state, job.progress, job.cancel_requested, job.queue_position,
                                      job.state === "COMPLETED" ? null : Math.floor(Date.now() / 1000)]);
    let entry = rows.get(job.id);
    if (!entry || entry.signature !== signature) {
      const node = row(job);
      if (entry) entry.node.replaceWith(node);
      entry = { signature, node };
      rows.set(job.id, entry);
    }
    // Keep the newest-first order without moving nodes that are already in place.
    const wanted = previous ? previous.nextSibling : list.firstChild;
    if (wanted !== entry.node) list.insertBefore(entry.node, wanted);
    previous = entry.node;
  }
  for (const [id, entry] of rows) {
    if (!seen.has(id)) { entry.node.remove(); rows.delete(id); }
  }
  document.getElementById("jobs-empty").hidden = answer.jobs.length > 0;
  return answer;
}
