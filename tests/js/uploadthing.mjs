#!/usr/bin/env node
// Uploads through the real `uploadthing` 7.4.4 client (the version video-starter-kit pins) to a
// thorgen server, then reads each returned URL with fal's `ffmpeg-api/metadata` through
// @fal-ai/client 1.2.1, as the kit does next. Prints one JSON line per step on stdout.
//
//   node uploadthing.mjs uploads  <thorgen_base_url> <media_dir>   (still.png, clip.mp4, music.wav)
//   node uploadthing.mjs refusals <thorgen_base_url>               (over the limit, wrong type)
//
// The uploadthing client is browser code: it reads `window.fetch` and PUTs with XMLHttpRequest for
// upload progress. Node has neither `window` nor XMLHttpRequest, so a small XMLHttpRequest written
// here (on node:http, firing upload progress as the body is written) stands in for the browser's.
// The kit calls `/api/uploadthing` on its own origin, rewritten to thorgen; here the client is given
// thorgen's URL directly, which is where that rewrite lands.

import http from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";

import { createFalClient } from "fal-client-1-2-1";
import { genUploader, version as uploadthingVersion } from "uploadthing/client";

const [mode, baseArg, mediaDir] = process.argv.slice(2);
if (!["uploads", "refusals"].includes(mode) || !baseArg || (mode === "uploads" && !mediaDir)) {
  console.error("usage: node uploadthing.mjs <uploads|refusals> <thorgen_base_url> [media_dir]");
  process.exit(64);
}
const base = baseArg.replace(/\/+$/, "");
let failed = false;

function emit(step, details, ok = true) {
  if (!ok) failed = true;
  process.stdout.write(`${JSON.stringify({ step, ok, ...details })}\n`);
}

function describeError(error) {
  return error instanceof Error
    ? { constructor: error.constructor?.name, code: error.code, message: error.message }
    : { thrown: String(error) };
}

// -- the browser pieces the client uses ------------------------------------------------------------

const puts = [];

class NodeXMLHttpRequest {
  constructor() {
    this.upload = new EventTarget();
    this.events = new EventTarget();
    this.headers = {};
    this.responseType = "";
    this.status = 0;
    this.statusText = "";
    this.response = null;
  }

  open(method, url) {
    this.method = method;
    this.url = new URL(url);
  }

  setRequestHeader(name, value) {
    this.headers[name] = value;
  }

  addEventListener(type, listener) {
    this.events.addEventListener(type, listener);
  }

  abort() {
    this.request?.destroy();
  }

  async send(body) {
    // Serialise the form as the browser would (multipart with a boundary), then write it in
    // chunks so the upload's progress events fire as the bytes leave.
    const encoded = new Response(body);
    const bytes = Buffer.from(await encoded.arrayBuffer());
    const headers = { ...this.headers, "content-type": encoded.headers.get("content-type"),
                      "content-length": String(bytes.length) };
    const record = { url: this.url.href, headers, progress: [] };
    puts.push(record);
    this.request = http.request(this.url, { method: this.method, headers }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => {
        this.status = response.statusCode;
        this.statusText = response.statusMessage;
        const text = Buffer.concat(chunks).toString();
        try {
          this.response = this.responseType === "json" ? JSON.parse(text) : text;
        } catch {
          this.response = null; // what a browser gives for responseType "json" and a non-JSON body
        }
        record.status = this.status;
        this.events.dispatchEvent(new Event("load"));
      });
    });
    this.request.on("error", () => this.events.dispatchEvent(new Event("error")));
    const CHUNK = 256 * 1024;
    let loaded = 0;
    for (let start = 0; start < bytes.length; start += CHUNK) {
      const piece = bytes.subarray(start, start + CHUNK);
      await new Promise((resolve) => this.request.write(piece, resolve));
      loaded += piece.length;
      const event = new Event("progress");
      event.loaded = loaded;
      record.progress.push(loaded);
      this.upload.dispatchEvent(event);
    }
    this.request.end();
  }
}

globalThis.window = globalThis;
globalThis.XMLHttpRequest = NodeXMLHttpRequest;

// The kit: `generateReactHelpers<OurFileRouter>()` → `useUploadThing("fileUploader")`, whose
// startUpload calls the same genUploader(...).uploadFiles with package "@uploadthing/react".
const { uploadFiles } = genUploader({ url: new URL(`${base}/api/uploadthing`), package: "@uploadthing/react" });

// The kit's src/lib/fal.ts: a string proxyUrl and no credentials. 1.2.1 honours a string proxyUrl
// only in a browser (window is set above); the kit's relative "/api/fal" is thorgen's here.
const fal = createFalClient({ credentials: () => null, proxyUrl: `${base}/api/fal` });

async function upload(file) {
  const progress = [];
  const result = await uploadFiles("fileUploader", {
    files: [file],
    onUploadProgress: ({ progress: percent }) => progress.push(percent),
  });
  return { result, progress };
}

async function runUploads() {
  const config = await (await fetch(`${base}/api/uploadthing`)).json();
  emit("route_config", { config, client_version: uploadthingVersion });

  const media = [["still.png", "image/png"], ["clip.mp4", "video/mp4"], ["music.wav", "audio/wav"]];
  for (const [name, type] of media) {
    const bytes = await readFile(path.join(mediaDir, name));
    const file = new File([bytes], name, { type, lastModified: 1_700_000_000_000 });
    try {
      const { result, progress } = await upload(file);
      const [uploaded] = result;
      const put = puts.at(-1);
      const download = await fetch(uploaded.url);
      const body = Buffer.from(await download.arrayBuffer());
      // The kit's next step for every upload: ffmpeg-api/metadata in streaming mode.
      const { data } = await fal.subscribe("fal-ai/ffmpeg-api/metadata", {
        input: { media_url: uploaded.url, extract_frames: true },
        mode: "streaming",
      });
      emit(`upload_${name}`, {
        count: result.length,
        uploaded,
        progress,
        put_status: put.status,
        put_headers: put.headers,
        put_progress_events: put.progress.length,
        downloaded: { status: download.status, content_type: download.headers.get("content-type"),
                      same_bytes: body.equals(bytes) },
        size: bytes.length,
        metadata: data.media,
      });
    } catch (error) {
      emit(`upload_${name}`, { error: describeError(error) }, false);
    }
  }
}

async function runRefusals() {
  // Over the image limit (16 MB), and a type the route does not take. Both must fail before any
  // byte is sent: the client shows the UploadThingError it is handed.
  const cases = [
    ["over_limit", new File([new Uint8Array(16 * 1024 * 1024 + 1)], "huge.png", { type: "image/png" })],
    ["wrong_type", new File(["%PDF-1.4\n"], "notes.pdf", { type: "application/pdf" })],
  ];
  for (const [step, file] of cases) {
    const before = puts.length;
    try {
      const { result } = await upload(file);
      emit(step, { unexpected_success: result }, false);
    } catch (error) {
      emit(step, { error: describeError(error), puts: puts.length - before });
    }
  }
}

const watchdog = setTimeout(() => {
  emit("watchdog", { message: "ran past 100 s" }, false);
  process.exit(1);
}, 100_000);
try {
  await (mode === "uploads" ? runUploads() : runRefusals());
  emit("done", {});
} catch (error) {
  emit("crash", { error: describeError(error), stack: error?.stack }, false);
}
clearTimeout(watchdog);
process.exit(failed ? 1 : 0);
