#!/usr/bin/env node
// thorgen's web console (GET /) in headless Chromium, driven by playwright-core (Debian's chromium,
// never a downloaded browser). A conversation over stdio with tests/test_console.py: one JSON line
// per step on stdout; the Python side answers a step that waits ({"waiting": ...}) with one JSON line
// on stdin (e.g. the request id of a job it submitted through fal's Python client).
//
//   node console.mjs <thorgen_base_url> <keyed_base_url> <api_key> <screenshot_dir>
//
// steps, in order (the page stays open across the open-server steps, as a person's tab would):
//   loaded        the page renders the machine panel; every console message is recorded
//   flux          a flux/schnell form submission: progress, then an <img> with naturalWidth > 0
//   bad_field     image_size "bogus": the job's 422 is shown next to the image_size field
//   upload        a file picked for media_url goes up through thorgen's storage, then metadata runs on it
//   python_job    a job Python submits appears in the job list (waits at most 3 s for it)
//   cancel        a long job Python submits is cancelled with its row's Cancel button
//   screenshots   light and dark, desktop and narrow
//   keyed_prompt  a thorgen with an API key: without it, only the key prompt shows and no data loads
//   keyed_works   with the key typed in, the console loads
// Set CHROMIUM to use another binary than /usr/bin/chromium.

import { createInterface } from "node:readline";
import path from "node:path";

import { chromium } from "playwright-core";

const [base, keyedBase, apiKey, shots] = process.argv.slice(2);
if (!base || !keyedBase || !apiKey || !shots) {
  console.error("usage: node console.mjs <thorgen_base_url> <keyed_base_url> <api_key> <screenshot_dir>");
  process.exit(64);
}
const STEP_TIMEOUT_MS = 60_000;
let failed = false;

const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(waiting) {
  emit("waiting", { waiting });
  const { value, done } = await input.next();
  if (done) throw new Error(`stdin closed while waiting for ${waiting}`);
  return JSON.parse(value);
}

function emit(step, details, ok = true) {
  if (!ok) failed = true;
  process.stdout.write(`${JSON.stringify({ step, ok, ...details })}\n`);
}

let skipping = false; // once the page did not load, the open-server steps after it are skipped

async function run(step, body) {
  if (skipping) { emit(step, { error: "skipped: the console did not load" }, false); return; }
  try {
    const details = await body();
    emit(step, details, details?.passed !== false);
  } catch (error) {
    emit(step, { error: String(error?.stack || error) }, false);
    if (step === "loaded") skipping = true;
  }
}

function watch(page) {
  const messages = [];
  const responses = [];
  page.on("console", (message) => messages.push({ type: message.type(), text: message.text() }));
  page.on("pageerror", (error) => messages.push({ type: "pageerror", text: error.message }));
  page.on("response", (response) => responses.push({ url: response.url(), status: response.status(),
                                                     method: response.request().method() }));
  page.on("request", (request) => {
    const authorization = request.headers().authorization;
    if (authorization) responses.push({ url: request.url(), sent_key: authorization === `Key ${apiKey}` });
  });
  return { messages, responses };
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                        args: ["--no-sandbox"] }); // tests run as root in CI
emit("browser", { version: browser.version() });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(STEP_TIMEOUT_MS);
const page = await context.newPage();
const seen = watch(page);

await run("loaded", async () => {
  await page.goto(`${base}/`);
  await page.waitForSelector("body[data-live='1']"); // the first poll of /info and the jobs rendered
  const models = await page.$$eval("#models tbody tr", (rows) => rows.map((row) => ({
    name: row.dataset.model, installed: row.children[1].textContent, loaded: row.children[2].textContent })));
  const memory = await page.$eval("#memory-numbers", (node) => ({ held: Number(node.dataset.held),
    budget: Number(node.dataset.budget), text: node.textContent }));
  const budgetHow = await page.textContent("#budget-how");
  const badge = await page.textContent("#badge");
  const endpoints = await page.$$eval("#endpoint option", (options) => options.map((option) => option.value));
  return { models, memory, budgetHow, badge, endpoints, keyPromptHidden: await page.isHidden("#key-prompt"),
           messages: [...seen.messages] };
});

await run("flux", async () => {
  await page.selectOption("#endpoint", "fal-ai/flux/schnell");
  await page.fill("#f-prompt", "a lighthouse at dusk");
  // Every status line the page shows, recorded as it changes.
  await page.evaluate(() => {
    window.statuses = [];
    new MutationObserver(() => window.statuses.push(document.getElementById("try-status").textContent))
      .observe(document.getElementById("try-status"), { childList: true, characterData: true, subtree: true });
  });
  await page.click("#submit");
  await page.waitForFunction(() => {
    const image = document.querySelector("#try-output img");
    return image && image.complete && image.naturalWidth > 0;
  });
  const image = await page.$eval("#try-output img", (node) => ({ src: node.src, naturalWidth: node.naturalWidth,
                                                                 naturalHeight: node.naturalHeight }));
  const bar = await page.$eval("#try-bar", (node) => ({ value: node.value, max: node.max }));
  const progressShown = await page.isVisible("#try-progress");
  return { image, bar, progressShown, statuses: await page.evaluate(() => window.statuses) };
});

await run("bad_field", async () => {
  await page.fill("#f-image_size", "bogus");
  await page.click("#submit");
  await page.waitForFunction(() => document.getElementById("f-image_size-error").textContent !== "");
  const message = await page.textContent("#f-image_size-error");
  const invalid = await page.getAttribute("#f-image_size", "aria-invalid");
  // The message sits inside the field's own block, next to its input.
  const sameField = await page.$eval("#f-image_size-error", (node) => node.closest("[data-field]").dataset.field);
  await page.fill("#f-image_size", "");
  return { message, invalid, sameField };
});

// A mono 16-bit WAV of silence, built here: the file a person would pick from their disk.
function wav(seconds = 0.5, rate = 8000) {
  const data = seconds * rate * 2;
  const buffer = Buffer.alloc(44 + data);
  buffer.write("RIFF", 0); buffer.writeUInt32LE(36 + data, 4); buffer.write("WAVE", 8);
  buffer.write("fmt ", 12); buffer.writeUInt32LE(16, 16); buffer.writeUInt16LE(1, 20); buffer.writeUInt16LE(1, 22);
  buffer.writeUInt32LE(rate, 24); buffer.writeUInt32LE(rate * 2, 28); buffer.writeUInt16LE(2, 32);
  buffer.writeUInt16LE(16, 34); buffer.write("data", 36); buffer.writeUInt32LE(data, 40);
  return buffer;
}

await run("upload", async () => {
  await page.selectOption("#endpoint", "fal-ai/ffmpeg-api/metadata");
  await page.setInputFiles("#f-media_url-file", { name: "silence.wav", mimeType: "audio/wav", buffer: wav() });
  await page.waitForFunction(() => document.getElementById("f-media_url").value !== "");
  const url = await page.inputValue("#f-media_url");
  await page.click("#submit");
  // The output names the uploaded file again, so the page shows it with an <audio> player.
  await page.waitForSelector("#try-output audio");
  const output = JSON.parse(await page.textContent("#try-output pre"));
  const player = await page.$eval("#try-output audio", (node) => node.src);
  return { url, output, player };
});

await run("python_job", async () => {
  const { request_id } = await ask("python_job");
  await page.waitForSelector(`#jobs [data-job="${request_id}"]`, { timeout: 3_000 });
  const text = await page.textContent(`#jobs [data-job="${request_id}"]`);
  emit("python_job_seen", { request_id });
  return { request_id, text };
});

await run("cancel", async () => {
  const { request_id } = await ask("cancel");
  const row = `#jobs [data-job="${request_id}"]`;
  await page.waitForSelector(`${row} button.cancel`);
  await page.click(`${row} button.cancel`);
  await page.waitForSelector(`${row}[data-state="cancelled"]`);
  return { request_id, text: await page.textContent(row) };
});

await run("screenshots", async () => {
  const written = [];
  await page.waitForSelector("#jobs [data-state='done'] img");
  for (const [name, viewport] of [["desktop", { width: 1280, height: 900 }], ["narrow", { width: 390, height: 844 }]]) {
    for (const scheme of ["light", "dark"]) {
      await page.setViewportSize(viewport);
      await page.emulateMedia({ colorScheme: scheme });
      const file = path.join(shots, `console-${name}-${scheme}.png`);
      await page.screenshot({ path: file, fullPage: name === "narrow" });
      written.push(file);
    }
  }
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  return { written, darkBackground: background };
});
const openConsole = seen.messages;
await context.close();
skipping = false;

// -- a thorgen with an API key ------------------------------------------------------------------------
const keyed = await browser.newContext({ viewport: { width: 1280, height: 900 } });
keyed.setDefaultTimeout(STEP_TIMEOUT_MS);
const keyedPage = await keyed.newPage();
const keyedSeen = watch(keyedPage);

await run("keyed_prompt", async () => {
  await keyedPage.goto(`${keyedBase}/`);
  await keyedPage.waitForSelector("#key-prompt:not([hidden])");
  const focused = await keyedPage.evaluate(() => document.activeElement?.id);
  await keyedPage.screenshot({ path: path.join(shots, "console-key-prompt.png") });
  return { mainHidden: await keyedPage.isHidden("#main"), promptVisible: await keyedPage.isVisible("#key-prompt"),
           focused, models: await keyedPage.$$eval("#models tbody tr", (rows) => rows.length),
           responses: [...keyedSeen.responses] };
});

await run("keyed_works", async () => {
  keyedSeen.responses.length = 0;
  await keyedPage.fill("#key-input", apiKey);
  await keyedPage.press("#key-input", "Enter"); // the keyboard alone opens it
  await keyedPage.waitForSelector("body[data-live='1']");
  await keyedPage.waitForSelector("#endpoint option[value='fal-ai/flux/schnell']", { state: "attached" });
  return { mainVisible: await keyedPage.isVisible("#main"), promptHidden: await keyedPage.isHidden("#key-prompt"),
           models: await keyedPage.$$eval("#models tbody tr", (rows) => rows.length),
           stored: await keyedPage.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length })),
           responses: [...keyedSeen.responses] };
});
emit("console_messages", { open: openConsole, keyed: keyedSeen.messages });
await keyed.close();
await browser.close();
emit("done", {});
process.exit(failed ? 1 : 0);
