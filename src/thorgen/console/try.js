// "Try it": a form for any endpoint, generated from its input schema in /openapi.json (the Structs
// thorgen validates with), submitted through the real queue protocol, with live progress.
import { api, ApiError, el } from "./api.js";
import { renderOutput } from "./output.js";

let openapi = null;
let endpoints = [];
let current = null; // { id, schema }

function resolve(schema) {
  const ref = schema?.$ref;
  return ref ? openapi.components.schemas[ref.split("/").pop()] : schema;
}

function inputSchema(id) {
  const path = openapi.paths[`/queue/${id}`];
  return resolve(path?.post?.requestBody?.content?.["application/json"]?.schema) || { properties: {} };
}

// Collapse anyOf [X, null] to X and note that null (leaving it out) is allowed.
function shape(property) {
  const variants = (property.anyOf || [property]).map(resolve);
  const nullable = variants.some((variant) => variant.type === "null");
  const real = variants.filter((variant) => variant.type !== "null");
  const enumVariant = real.find((variant) => Array.isArray(variant.enum));
  if (enumVariant && real.length === 1) return { kind: "enum", options: enumVariant.enum, nullable };
  if (real.some((variant) => variant.type === "string")) return { kind: "string", schema: real.find((v) => v.type === "string"),
                                                                  json: real.length > 1, nullable };
  if (real.length === 1 && (real[0].type === "integer" || real[0].type === "number")) {
    return { kind: "number", schema: real[0], nullable };
  }
  if (real.length === 1 && real[0].type === "boolean") return { kind: "boolean", nullable };
  return { kind: "json", nullable };
}

const isFileField = (name) => /(_url|_urls)$/.test(name) && name !== "webhook_url";

function field(name, property, required) {
  const info = shape(property);
  const id = `f-${name}`;
  const hint = [];
  const attributes = { id, name, "aria-describedby": `${id}-error ${id}-hint` };
  let control;
  if (info.kind === "enum") {
    control = el("select", attributes,
      info.nullable || !("default" in property) ? el("option", { value: "" }, "(default)") : null,
      info.options.map((option) => el("option", { value: String(option), selected: option === property.default },
                                      String(option))));
  } else if (info.kind === "boolean") {
    control = el("input", { ...attributes, type: "checkbox", checked: property.default === true });
  } else if (info.kind === "number") {
    const schema = info.schema;
    const bounded = (value) => value !== undefined && Math.abs(value) < 1e15;
    control = el("input", { ...attributes, type: "number", inputmode: schema.type === "integer" ? "numeric" : "decimal",
      step: schema.type === "integer" ? "1" : "any",
      min: bounded(schema.minimum) ? String(schema.minimum) : undefined,
      max: bounded(schema.maximum) ? String(schema.maximum) : undefined,
      value: property.default ?? "", placeholder: info.nullable ? "(none)" : undefined });
    if (bounded(schema.minimum) && bounded(schema.maximum)) hint.push(`${schema.minimum}–${schema.maximum}`);
  } else if (info.kind === "string") {
    const long = name.includes("prompt") || name === "text" || (info.schema?.maxLength ?? 0) > 1000;
    const text = { ...attributes, value: property.default ?? "",
      maxlength: info.schema?.maxLength ? String(info.schema.maxLength) : undefined };
    control = long ? el("textarea", { ...text, rows: "3" }, property.default ?? "") : el("input", { ...text, type: "text" });
    if (info.json) hint.push("text, or JSON for an object");
  } else {
    control = el("textarea", { ...attributes, rows: "3", class: "mono", "data-json": "1" },
      property.default === undefined || property.default === null ? "" : JSON.stringify(property.default, null, 1));
    hint.push("JSON");
  }
  if (required && info.kind !== "boolean") control.required = true;
  control.addEventListener("input", () => { // an edited field's old server error no longer applies
    control.removeAttribute("aria-invalid");
    const slot = document.getElementById(`${id}-error`);
    if (slot) slot.textContent = "";
  });
  control.dataset.kind = info.kind;
  control.dataset.default = JSON.stringify(property.default ?? null);
  const parts = [el("label", { for: id }, name, required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : null),
                 control];
  if (info.kind === "string" && isFileField(name)) {
    const upload = el("input", { type: "file", id: `${id}-file`, "aria-label": `Upload a file for ${name}` });
    const note = el("span", { class: "small muted", "aria-live": "polite" });
    upload.addEventListener("change", () => uploadInto(upload, control, note));
    parts.push(el("div", { class: "upload" }, upload, note));
  }
  parts.push(el("p", { class: "small muted", id: `${id}-hint` }, hint.join(" · ")),
             el("p", { class: "field-error", id: `${id}-error` }));
  return el("div", { class: info.kind === "boolean" ? "field check" : "field", "data-field": name }, ...parts);
}

async function uploadInto(input, target, note) {
  const file = input.files?.[0];
  if (!file) return;
  note.textContent = "uploading…";
  try {
    // thorgen's own storage, fal's protocol: initiate (JSON), then PUT the bytes to the signed URL.
    const target_ = await api("/rest/storage/upload/initiate", {
      method: "POST", json: { content_type: file.type || "application/octet-stream", file_name: file.name } });
    const put = await fetch(local(target_.upload_url), { method: "PUT", body: file,
                                                  headers: { "content-type": file.type || "application/octet-stream" } });
    if (!put.ok) throw new Error(`upload failed: HTTP ${put.status}`);
    target.value = target_.file_url;
    note.textContent = `uploaded ${file.name}`;
  } catch (error) {
    note.textContent = String(error.message || error);
  }
}

function collect(form) {
  const body = {};
  for (const control of form.querySelectorAll("[data-kind]")) {
    const fallback = JSON.parse(control.dataset.default);
    let value;
    if (control.dataset.kind === "boolean") value = control.checked;
    else if (control.value === "") continue; // empty: the server's default (or null) applies
    else if (control.dataset.kind === "number") value = Number(control.value);
    else if (control.dataset.kind === "json" || (control.value.trim().startsWith("{") && control.dataset.kind === "string")) {
      try { value = JSON.parse(control.value); } catch { value = control.value; } // the server says what is wrong
    } else value = control.value;
    if (JSON.stringify(value) === JSON.stringify(fallback) && !control.required) continue;
    body[control.name] = value;
  }
  return body;
}

function clearErrors() {
  document.getElementById("try-error").textContent = "";
  for (const node of document.querySelectorAll("#try-form .field-error")) node.textContent = "";
  for (const node of document.querySelectorAll("#try-form [aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showErrors(error) {
  const detail = error.body?.detail;
  if (!Array.isArray(detail)) {
    document.getElementById("try-error").textContent = error.message;
    return;
  }
  const loose = [];
  for (const item of detail) {
    const name = (item.loc || [])[1];
    const slot = name !== undefined && document.getElementById(`f-${name}-error`);
    if (slot) {
      slot.textContent = item.msg;
      document.getElementById(`f-${name}`)?.setAttribute("aria-invalid", "true");
    } else loose.push(`${(item.loc || []).join(".")}: ${item.msg}`);
  }
  document.getElementById("try-error").textContent = loose.join("; ");
  document.querySelector("#try-form [aria-invalid]")?.focus();
}

const pause = (ms) => new Promise((done) => setTimeout(done, ms));
// thorgen builds absolute URLs on server.public_url when one is set; the page asks its own origin,
// which its Content-Security-Policy (connect-src 'self') and the trust rules both expect.
const local = (url) => { const parsed = new URL(url, location.href); return parsed.pathname + parsed.search; };

async function run(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors();
  const submit = document.getElementById("submit");
  const bar = document.getElementById("try-bar");
  const status = document.getElementById("try-status");
  const output = document.getElementById("try-output");
  output.replaceChildren();
  submit.disabled = true;
  try {
    const queued = await api(`/queue/${current.id}`, { method: "POST", json: collect(form) });
    document.getElementById("try-progress").hidden = false;
    bar.removeAttribute("value"); // indeterminate until a step is logged
    status.textContent = "queued";
    for (;;) {
      const state = await api(`${local(queued.status_url)}?logs=1`);
      const step = [...(state.logs || [])].reverse().map((log) => /^(.+?) (\d+)\/(\d+)$/.exec(log.message)).find(Boolean);
      if (step) { bar.max = Number(step[3]); bar.value = Number(step[2]); }
      status.textContent = state.status === "IN_QUEUE" ? `queued (position ${state.queue_position ?? 0})`
        : step ? `${step[1]} ${step[2]}/${step[3]}` : state.status.toLowerCase().replace("_", " ");
      if (state.status === "COMPLETED") break;
      await pause(400);
    }
    const result = await api(local(queued.response_url));
    bar.max = 1; bar.value = 1;
    status.textContent = "done";
    output.replaceChildren(renderOutput(result));
  } catch (error) {
    document.getElementById("try-progress").hidden = true;
    if (error instanceof ApiError) showErrors(error);
    else throw error;
  } finally {
    submit.disabled = false;
  }
}

function snippet(language) {
  const origin = location.origin;
  const args = JSON.stringify(collect(document.getElementById("try-form")), null, 2);
  if (language === "python") {
    return `import fal_client, fal_client.client as fal_internal
fal_internal.RUN_URL_FORMAT = "${origin}/run/"
fal_internal.QUEUE_URL_FORMAT = "${origin}/queue/"
fal_internal.REST_URL = "${origin}/rest"
fal_internal.CDN_URL = "${origin}/cdn"
client = fal_client.SyncClient(key="local")   # any key unless THORGEN_SERVER__API_KEY is set
result = client.subscribe("${current.id}", ${args.replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None")})
print(result)
`;
  }
  return `import { createFalClient } from "@fal-ai/client";
const fal = createFalClient({
  credentials: "local", // any value; thorgen ignores it unless an API key is configured
  proxyUrl: { url: "${origin}/api/fal/proxy", when: "always" },
});
const result = await fal.subscribe("${current.id}", { input: ${args.replace(/\n/g, "\n  ")}, logs: true });
console.log(result.data);
`;
}

async function copy(language) {
  const text = snippet(language);
  document.getElementById("code").textContent = text;
  const box = document.getElementById("code-box");
  box.hidden = false;
  box.open = true;
  try { await navigator.clipboard.writeText(text); } catch { /* shown above for a manual copy */ }
}

function choose(id) {
  const endpoint = endpoints.find((row) => row.id === id);
  const schema = inputSchema(id);
  current = { id, schema };
  const required = new Set(schema.required || []);
  const names = Object.keys(schema.properties || {});
  names.sort((a, b) => Number(required.has(b)) - Number(required.has(a))); // required first
  document.getElementById("try-form").replaceChildren(
    ...names.map((name) => field(name, schema.properties[name], required.has(name))));
  document.getElementById("endpoint-summary").textContent =
    `${endpoint?.summary || ""}${endpoint && !endpoint.available ? ` — unavailable: ${endpoint.reason}` : ""}`;
  document.getElementById("try-output").replaceChildren();
  document.getElementById("try-progress").hidden = true;
  document.getElementById("code-box").hidden = true;
  clearErrors();
}

export async function setupTry() {
  [openapi, { endpoints }] = await Promise.all([api("/openapi.json"), api("/endpoints")]);
  const select = document.getElementById("endpoint");
  select.replaceChildren(...endpoints.map((row) =>
    el("option", { value: row.id, disabled: !row.available }, row.available ? row.id : `${row.id} (unavailable)`)));
  const first = endpoints.find((row) => row.id === "fal-ai/flux/schnell" && row.available)
    || endpoints.find((row) => row.available);
  if (first) select.value = first.id;
  select.addEventListener("change", () => choose(select.value));
  document.getElementById("try-form").addEventListener("submit", (event) => run(event).catch(report));
  document.getElementById("copy-python").addEventListener("click", () => copy("python"));
  document.getElementById("copy-js").addEventListener("click", () => copy("js"));
  if (first) choose(first.id);
}

function report(error) {
  document.getElementById("try-error").textContent = String(error.message || error);
}
