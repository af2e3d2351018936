#!/usr/bin/env node
// What only a browser shows, in headless Chromium driven by playwright-core (Debian's chromium binary,
// never a downloaded browser). Prints one JSON line per case on stdout.
//
//   node browser.mjs <thorgen_base_url> <page_port> <audio_url> <video_url> <png_path>
//
// The page is served from a second loopback origin, http://127.0.0.1:<page_port>, standing in for
// the video-starter-kit's Next server: file URLs on thorgen are cross-origin to it, as in the kit,
// and /api/uploadthing is passed through to thorgen the way the kit's `beforeFiles` rewrite does.
//
// cases:
//   cors_cache  an <audio> element loads a thorgen file (no CORS), then the page fetch()es the same
//               URL, as the kit's Remotion preview does: the fetch must not be blocked.
//   video_plays a thorgen MP4 in a <video>: metadata, a decodable frame, playback advancing.
//   upload      the uploadthing 7.4.4 client running in the page (ES modules from tests/js/node_modules
//               through an import map) uploads a PNG; the returned URL is fetched back.
// Set CHROMIUM to use another binary than /usr/bin/chromium.

import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const [baseArg, pagePortArg, audioUrl, videoUrl, pngPath] = process.argv.slice(2);
if (!baseArg || !pagePortArg || !audioUrl || !videoUrl || !pngPath) {
  console.error("usage: node browser.mjs <thorgen_base_url> <page_port> <audio_url> <video_url> <png_path>");
  process.exit(64);
}
const thorgen = new URL(baseArg);
const here = path.dirname(fileURLToPath(import.meta.url));
const modulesRoot = path.join(here, "node_modules");
const CASE_TIMEOUT_MS = 30_000;
let failed = false;

function emit(step, details, ok = true) {
  if (!ok) failed = true;
  process.stdout.write(`${JSON.stringify({ step, ok, ...details })}\n`);
}

// -- the import map: every bare specifier reachable from uploadthing/client, resolved as Node does ----

async function importMap(entry) {
  const imports = {};
  const seen = new Set();
  const queue = [import.meta.resolve(entry)];
  imports[entry] = urlPath(queue[0]);
  while (queue.length) {
    const file = queue.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(fileURLToPath(file), "utf8");
    // Static imports and re-exports: `from "x"` and bare `import "x"` (effect's ESM has no dynamic ones).
    for (const [, specifier] of source.matchAll(/(?:\bfrom|^import)\s*["']([@\w.][\w@./-]*)["']/gm)) {
      let resolved;
      try {
        resolved = specifier.startsWith(".") ? new URL(specifier, file).href : import.meta.resolve(specifier);
      } catch {
        continue; // text that only looks like an import (in a comment or a string)
      }
      if (!resolved.startsWith("file:") || !/\.m?js$/.test(resolved)) continue; // e.g. node: built-ins
      if (!specifier.startsWith(".")) imports[specifier] = urlPath(resolved);
      queue.push(resolved);
    }
  }
  return { imports };
}

function urlPath(fileUrl) {
  const relative = path.relative(modulesRoot, fileURLToPath(fileUrl));
  return `/node_modules/${relative.split(path.sep).join("/")}`;
}

const uploadPage = (map) => `<!doctype html>
<meta charset="utf-8"><title>upload</title>
<script type="importmap">${JSON.stringify(map)}</script>
<script type="module">
  import { genUploader } from "uploadthing/client";
  // As the kit's useUploadThing("fileUploader"): its own origin's /api/uploadthing, rewritten to thorgen.
  const { uploadFiles } = genUploader({ url: new URL("/api/uploadthing", location.origin),
                                        package: "@uploadthing/react" });
  window.utUpload = (file, onProgress) =>
    uploadFiles("fileUploader", { files: [file], onUploadProgress: ({ progress }) => onProgress(progress) });
  window.uploaderReady = true;
</script>`;

// -- the page's origin: static pages, node_modules, and /api/uploadthing passed through to thorgen ----

async function startPageServer(port, map) {
  const server = http.createServer(async (request, response) => {
    const url = new URL(request.url, `http://127.0.0.1:${port}`);
    if (url.pathname === "/api/uploadthing" || url.pathname.startsWith("/api/uploadthing/")) {
      // Next's rewrite proxy: same method, headers (Origin included) and body; Host becomes thorgen's.
      const upstream = http.request(new URL(url.pathname + url.search, thorgen),
        { method: request.method, headers: { ...request.headers, host: thorgen.host } }, (answer) => {
          response.writeHead(answer.statusCode, answer.headers);
          answer.pipe(response);
        });
      upstream.on("error", (error) => { response.writeHead(502); response.end(String(error)); });
      request.pipe(upstream);
      return;
    }
    if (url.pathname === "/blank.html" || url.pathname === "/upload.html") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end(url.pathname === "/upload.html" ? uploadPage(map) : "<!doctype html><title>blank</title>");
      return;
    }
    const file = path.join(here, decodeURIComponent(url.pathname));
    if (url.pathname.startsWith("/node_modules/") && file.startsWith(modulesRoot + path.sep) && file.endsWith(".js")) {
      try {
        const body = await readFile(file);
        response.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
        response.end(body);
        return;
      } catch { /* fall through to 404 */ }
    }
    response.writeHead(404);
    response.end();
  });
  await new Promise((resolve, reject) => server.listen(port, "127.0.0.1", resolve).on("error", reject));
  return server;
}

// -- the cases -----------------------------------------------------------------------------------------

async function withPage(browser, step, body) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const console_ = [];
  const requests = [];
  page.on("console", (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console_.push(`pageerror: ${error.message}`));
  const pending = []; // header reads still under way: awaited before the context closes
  page.on("requestfinished", (request) => pending.push((async () => {
    requests.push({ method: request.method(), url: request.url(), headers: await request.allHeaders(),
                    status: (await request.response())?.status() });
  })().catch((error) => requests.push({ url: request.url(), unread: String(error) }))));
  page.on("requestfailed", (request) => requests.push({ method: request.method(), url: request.url(),
                                                         failure: request.failure()?.errorText }));
  try {
    const details = await body(page);
    await Promise.all(pending);
    emit(step, { ...details, console: console_, requests }, details.passed !== false);
  } catch (error) {
    await Promise.all(pending);
    emit(step, { error: String(error?.stack || error), console: console_, requests }, false);
  } finally {
    await context.close();
  }
}

const pageOrigin = `http://127.0.0.1:${pagePortArg}`;

async function corsCache(page) {
  await page.goto(`${pageOrigin}/blank.html`);
  return page.evaluate(async ({ url, timeout }) => {
    const audio = new Audio(); // no crossorigin attribute: a no-CORS load, as the kit's timeline does
    audio.preload = "auto";
    const loaded = new Promise((resolve, reject) => {
      audio.addEventListener("canplaythrough", resolve, { once: true });
      audio.addEventListener("error", () => reject(new Error(`audio error ${audio.error?.code}`)), { once: true });
      setTimeout(() => reject(new Error("audio did not load")), timeout);
    });
    audio.src = url;
    await loaded;
    const element = { duration: audio.duration, readyState: audio.readyState };
    // Control: the same URL fetched past the cache; thorgen answers a CORS request correctly, so a
    // failure of the fetch below is the cached no-CORS response's doing.
    const fresh = await fetch(url, { cache: "no-store" }).then((r) => ({ ok: r.ok, status: r.status }),
                                                           (error) => ({ ok: false, error: String(error) }));
    try {
      const response = await fetch(url); // the preload fetch of the same URL
      const bytes = await response.arrayBuffer();
      return { element, fresh, fetch: { ok: response.ok, status: response.status, length: bytes.byteLength } };
    } catch (error) {
      return { element, fresh, fetch: { ok: false, error: String(error) }, passed: false };
    }
  }, { url: audioUrl, timeout: CASE_TIMEOUT_MS });
}

async function videoPlays(page) {
  await page.goto(`${pageOrigin}/blank.html`);
  return page.evaluate(async ({ url, timeout }) => {
    const video = document.createElement("video");
    video.muted = true; // autoplay policy: muted playback needs no user gesture
    video.preload = "auto";
    document.body.append(video);
    const canPlayType = video.canPlayType('video/mp4; codecs="avc1.64001F, mp4a.40.2"');
    const advanced = new Promise((resolve, reject) => {
      video.addEventListener("timeupdate", () => { if (video.currentTime > 0) resolve(); });
      video.addEventListener("error", () => reject(new Error(`video error ${video.error?.code}: ${video.error?.message}`)));
      setTimeout(() => reject(new Error(`playback did not advance (readyState ${video.readyState})`)), timeout);
    });
    video.src = url;
    await video.play();
    await advanced;
    return { canPlayType, duration: video.duration, readyState: video.readyState, currentTime: video.currentTime,
             width: video.videoWidth, height: video.videoHeight };
  }, { url: videoUrl, timeout: CASE_TIMEOUT_MS });
}

async function uploadInPage(page) {
  await page.goto(`${pageOrigin}/upload.html`);
  await page.waitForFunction(() => window.uploaderReady === true, null, { timeout: CASE_TIMEOUT_MS });
  const bytes = await readFile(pngPath);
  return page.evaluate(async ({ base64, name }) => {
    const data = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
    const file = new File([data], name, { type: "image/png" });
    const progress = [];
    const [uploaded] = await window.utUpload(file, (percent) => progress.push(percent));
    const back = new Uint8Array(await (await fetch(uploaded.url)).arrayBuffer());
    const same = back.length === data.length && back.every((value, index) => value === data[index]);
    return { uploaded, progress, same_bytes: same, size: data.length, passed: same };
  }, { base64: bytes.toString("base64"), name: path.basename(pngPath) });
}

const watchdog = setTimeout(() => {
  emit("watchdog", { message: "ran past 110 s" }, false);
  process.exit(1);
}, 110_000);
let browser;
let pageServer;
try {
  pageServer = await startPageServer(Number(pagePortArg), await importMap("uploadthing/client"));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"], // tests run as root in CI
  });
  emit("browser", { version: browser.version() });
  await withPage(browser, "cors_cache", corsCache);
  await withPage(browser, "video_plays", videoPlays);
  await withPage(browser, "upload", uploadInPage);
  emit("done", {});
} catch (error) {
  emit("crash", { error: String(error?.stack || error) }, false);
} finally {
  await browser?.close();
  pageServer?.close();
  clearTimeout(watchdog);
}
process.exit(failed ? 1 : 0);
