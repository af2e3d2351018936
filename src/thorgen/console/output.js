// Renders a job's output: every file it names as an <img>, <video> or <audio>, then the JSON itself.
import { el } from "./api.js";

const IMAGE = /\.(png|jpe?g|webp|gif)$/i;
const VIDEO = /\.(mp4|webm|mov)$/i;
const AUDIO = /\.(wav|mp3|ogg|flac|m4a|aac)$/i;

function files(value, found = []) {
  if (Array.isArray(value)) value.forEach((item) => files(item, found));
  else if (value && typeof value === "object") {
    if (typeof value.url === "string") found.push(value);
    else Object.values(value).forEach((item) => files(item, found));
  }
  return found;
}

function kind(file) {
  const type = file.content_type || "";
  const path = file.url.split("?")[0];
  if (type.startsWith("image/") || IMAGE.test(path)) return "image";
  if (type.startsWith("video/") || VIDEO.test(path)) return "video";
  if (type.startsWith("audio/") || AUDIO.test(path)) return "audio";
  return "link";
}

export function renderOutput(output, { compact = false } = {}) {
  const box = el("div", { class: compact ? "media compact" : "media" });
  for (const file of files(output)) {
    const what = kind(file);
    const name = file.file_name || file.url.split("/").pop();
    if (what === "image") box.append(el("a", { href: file.url, target: "_blank", rel: "noopener" },
      el("img", { src: file.url, alt: `output image ${name}`, loading: "lazy" })));
    else if (what === "video") box.append(el("video", { src: file.url, controls: true, preload: "metadata",
      "aria-label": `output video ${name}` }));
    else if (what === "audio") box.append(el("audio", { src: file.url, controls: true, preload: "metadata",
      "aria-label": `output audio ${name}` }));
    else box.append(el("a", { href: file.url, target: "_blank", rel: "noopener" }, name));
  }
  // An output with no file to show is its JSON: open it, except in the compact job list.
  const json = el("details", { class: "json", open: !compact && !box.childElementCount }, el("summary", {}, "JSON"),
    el("pre", {}, JSON.stringify(output, null, 2)));
  return el("div", {}, box, json);
}
