// The machine panel, from one /info answer (and the console API's torch version).
import { bytes, el, seconds } from "./api.js";

export function renderBadge(info, extra) {
  const device = info.runtime?.device;
  const parts = ["Local · thorgen", `v${info.version}`];
  if (device) parts.push(`${device.name}${device.kind && device.kind !== device.name ? ` (${device.kind})` : ""}`);
  if (extra?.torch) parts.push(`torch ${extra.torch}`);
  if (info.runtime?.tiny) parts.push("tiny models");
  document.getElementById("badge").textContent = parts.join(" · ");
}

// Through the CSSOM, which the page's Content-Security-Policy allows (style="" attributes it blocks).
function sized(node, property, percent) {
  node.style[property] = `${percent}%`;
  return node;
}

export function renderMachine(info, extra) {
  const runtime = info.runtime || {};
  const budget = runtime.budget_bytes || 0;
  const held = runtime.held_bytes || 0;
  const peak = runtime.peak_held_bytes || 0;
  // A few MiB of a many-GiB budget still shows as a sliver, so "something is loaded" is visible.
  const percent = (value) => (budget && value ? Math.min(100, Math.max(0.6, (100 * value) / budget)) : 0);
  const memory = document.getElementById("memory");
  memory.replaceChildren(
    el("div", { class: "memory-head" },
      el("strong", {}, "Memory"),
      el("span", { id: "memory-numbers", "data-held": held, "data-budget": budget },
        `${bytes(held)} held of ${bytes(budget)} budget · peak ${bytes(peak)}`)),
    el("div", { class: "bar", role: "meter", "aria-label": "Memory held of budget", "aria-valuemin": "0",
                "aria-valuemax": String(budget), "aria-valuenow": String(held),
                "aria-valuetext": `${bytes(held)} of ${bytes(budget)}` },
      sized(el("span", { class: "fill" }), "width", percent(held)),
      sized(el("span", { class: "peak", title: `peak ${bytes(peak)}` }), "left", percent(peak))),
    el("p", { class: "muted small", id: "budget-how" }, `Budget: ${runtime.budget || "not started"}`,
      ` · loads ${runtime.loads ?? 0}, evictions ${runtime.evictions ?? 0}`),
  );

  const lanes = document.getElementById("lanes");
  lanes.replaceChildren(...Object.entries(info.lanes || {}).map(([name, lane]) =>
    el("div", { class: "lane", "data-lane": name },
      el("strong", {}, name), ` ${lane.busy}/${lane.workers} busy · ${lane.queued} queued`)));

  // /info's disk block: files, the jobs database, free space.
  const disk = info.disk;
  document.getElementById("disk").textContent = disk
    ? `Disk (${disk.data_dir}): ${disk.files} files, ${bytes(disk.files_bytes)} · jobs database ${bytes(disk.database_bytes)}`
      + ` · ${bytes(disk.free_bytes)} free`
    : "";

  const loaded = new Map((runtime.loaded || []).map((model) => [model.name, model]));
  const body = document.querySelector("#models tbody");
  body.replaceChildren(...(info.models || []).map((model) => {
    const live = loaded.get(model.name);
    return el("tr", { "data-model": model.name },
      el("th", { scope: "row" }, model.name, el("span", { class: "muted small" }, ` ${model.family}`)),
      el("td", {}, model.installed
        ? el("span", { class: "ok" }, "installed")
        : el("span", {}, el("span", { class: "warn" }, "missing"), " ", el("code", {}, model.install_hint))),
      el("td", { class: "loaded" }, live ? el("span", { class: "ok" }, live.in_use ? "loaded · in use" : "loaded",
        live.pinned ? " · pinned" : "") : el("span", { class: "muted" }, "not loaded")),
      el("td", { class: "num" }, live ? bytes(live.bytes) : "–"),
      el("td", { class: "num" }, live ? seconds(live.load_seconds) : "–"));
  }));

  const refused = Object.entries(runtime.refused || {});
  const unreleased = runtime.unreleased || [];
  const note = document.getElementById("refused");
  note.hidden = !refused.length && !unreleased.length;
  note.textContent = [
    ...refused.map(([name, why]) => `Refused ${name}: ${why}`),
    ...(unreleased.length ? [`Unreleased after eviction: ${unreleased.join(", ")}`] : []),
  ].join(" · ");
}
