// The console's entry: ask for the API key if thorgen wants one, then poll /info and the jobs.
import { api, key, Unauthorized } from "./api.js";
import { refreshJobs } from "./jobs.js";
import { renderBadge, renderMachine } from "./machine.js";
import { setupTry } from "./try.js";

const POLL_MS = 2000;
let started = false;
let trySetUp = false;
let extra = null;

function showPrompt(message = "") {
  document.getElementById("main").hidden = true;
  document.getElementById("key-prompt").hidden = false;
  document.getElementById("key-error").textContent = message;
  document.getElementById("key-input").focus();
}

async function tick() {
  try {
    const [info, jobs] = await Promise.all([api("/info"), refreshJobs()]);
    extra = jobs;
    renderBadge(info, extra);
    renderMachine(info, extra);
    document.body.dataset.live = "1";
  } catch (error) {
    if (error instanceof Unauthorized) { started = false; showPrompt("The key was refused."); return; }
    console.warn("poll failed", error); // the server may be restarting: keep polling
  }
  setTimeout(tick, POLL_MS);
}

async function start() {
  try {
    const info = await api("/info");
    renderBadge(info, null);
  } catch (error) {
    if (error instanceof Unauthorized) { showPrompt(key.get() ? "The key was refused." : ""); return; }
    throw error;
  }
  document.getElementById("key-prompt").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("forget-key").hidden = !key.get();
  if (started) return;
  started = true;
  if (!trySetUp) { trySetUp = true; await setupTry(); }
  tick();
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  key.set(document.getElementById("key-input").value.trim());
  document.getElementById("key-input").value = "";
  start();
});
document.getElementById("forget-key").addEventListener("click", () => { key.clear(); location.reload(); });
start();
