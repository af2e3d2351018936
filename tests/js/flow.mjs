#!/usr/bin/env node
// Drives fal's official JS client (@fal-ai/client) against a thorgen server, the way the
// video-starter-kit editor does, and prints one JSON line per step on stdout.
//
//   node flow.mjs <editor|latest> <thorgen_base_url> <media_dir>
//
// editor: @fal-ai/client 1.2.1 (the version the editor's lockfile pins) configured exactly like the
//         editor's src/lib/fal.ts: a string proxyUrl and a credentials resolver that returns null.
//         A string proxyUrl is honoured by 1.2.1 only in a browser, so a small browser shim is put
//         in place before the client is created.
// latest: the newest @fal-ai/client 1.x, configured for Node with credentials "local" and
//         proxyUrl {url, when: "always"}.
//
// The media dir holds clip.mp4 (video with audio), still.png, music.wav and voice.wav, written by
// tests/test_js_clients.py. Every line printed is {"step": ..., "ok": true|false, ...}; the last
// line is {"step": "traffic", ...} with every HTTP call the client made. Exit status 0 only when
// every step behaved as expected.

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";

const USAGE = "usage: node flow.mjs <editor|latest> <thorgen_base_url> <path-to-media-dir>";
const [mode, baseArg, mediaDir] = process.argv.slice(2);
if (!["editor", "latest"].includes(mode) || !baseArg || !mediaDir) {
  console.error(USAGE);
  process.exit(64);
}
const base = baseArg.replace(/\/+$/, "");
const WATCHDOG_MS = Number(process.env.FLOW_TIMEOUT_MS || 110_000);

// -- output ---------------------------------------------------------------------------------------

function emit(step, details) {
  process.stdout.write(`${JSON.stringify({ step, ok: true, ...details })}\n`);
}

function describeError(error) {
  if (!(error instanceof Error)) {
    return { thrown: String(error) };
  }
  const described = {
    constructor: error.constructor?.name,
    name: error.name,
    message: error.message,
  };
  for (const key of ["status", "body", "requestId", "timeoutType"]) {
    if (error[key] !== undefined) {
      described[key] = error[key];
    }
  }
  if (error.cause) {
    described.cause = String(error.cause?.stack || error.cause);
  }
  described.stack = error.stack;
  return described;
}

// -- a record of every HTTP call the client makes (config.fetch defaults to the global fetch,
//    which is looked up when the client is created, so wrap it first). The client's behaviour is
//    untouched: the wrapper only watches. The harness's own downloads use rawFetch, unrecorded.

const rawFetch = globalThis.fetch;
const traffic = [];
globalThis.fetch = async (input, init = {}) => {
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  const entry = {
    method: (init.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase(),
    url: typeof input === "string" ? input : input instanceof URL ? input.href : input.url,
    target: headers.get("x-fal-target-url"),
    authorization: headers.get("authorization"),
    user_agent: headers.get("user-agent"),
    content_type: headers.get("content-type"),
  };
  traffic.push(entry);
  try {
    const response = await rawFetch(input, init);
    entry.status = response.status;
    entry.response_content_type = response.headers.get("content-type");
    entry.request_id = response.headers.get("x-fal-request-id");
    return response;
  } catch (error) {
    entry.error = String(error?.cause ?? error);
    throw error;
  }
};

function emitTraffic() {
  process.stdout.write(`${JSON.stringify({ step: "traffic", ok: true, calls: traffic })}\n`);
}

function fail(step, error) {
  process.stdout.write(`${JSON.stringify({ step, ok: false, error: describeError(error) })}\n`);
  emitTraffic();
  process.exit(1);
}

class Unexpected extends Error {
  constructor(message, details = {}) {
    super(message);
    this.name = "Unexpected";
    this.details = details;
  }
}

function check(condition, message, details) {
  if (!condition) {
    throw new Unexpected(message, details);
  }
}

const watchdog = setTimeout(() => {
  fail("watchdog", new Error(`the flow did not finish within ${WATCHDOG_MS} ms`));
}, WATCHDOG_MS);

// -- the client -----------------------------------------------------------------------------------

let falModule;
let fal;
try {
  if (mode === "editor") {
    // What 1.2.1 looks at: middleware.js withProxy() returns a pass-through when
    // `typeof window === "undefined"` (checked once, in createConfig), and runtime.js isBrowser()
    // needs `window.document` (it decides whether to send a User-Agent header). Both must hold
    // before createFalClient runs; the module is imported after the shim for good measure.
    globalThis.window = globalThis;
    globalThis.document = {};
    falModule = await import("fal-client-1-2-1");
    fal = falModule.createFalClient({
      // src/lib/fal.ts: credentials: () => localStorage.getItem("falKey"); no key saved -> null.
      credentials: () => null,
      // The editor's proxy is the same-origin Next.js route /api/fal; thorgen answers it directly.
      proxyUrl: `${base}/api/fal`,
    });
  } else {
    falModule = await import("fal-client-latest");
    fal = falModule.createFalClient({
      credentials: "local",
      proxyUrl: { url: `${base}/api/fal/proxy`, when: "always" },
    });
  }
} catch (error) {
  fail("client", error);
}

const clientPackage = JSON.parse(
  await readFile(
    new URL(`./node_modules/${mode === "editor" ? "fal-client-1-2-1" : "fal-client-latest"}/package.json`,
      import.meta.url),
    "utf8",
  ),
);
emit("client", {
  mode,
  package: clientPackage.name,
  version: clientPackage.version,
  browser_shim: mode === "editor",
  base_url: base,
});

// -- helpers --------------------------------------------------------------------------------------

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

async function download(url) {
  const response = await rawFetch(url);
  const bytes = Buffer.from(await response.arrayBuffer());
  return { status: response.status, content_type: response.headers.get("content-type"), bytes };
}

function summariseMedia(media) {
  const keep = ["media_type", "duration", "content_type", "file_size", "codec", "container", "fps",
    "frame_count", "resolution", "audio", "sample_rate", "channels", "start_frame_url",
    "end_frame_url", "url"];
  return Object.fromEntries(keep.filter((key) => key in media).map((key) => [key, media[key]]));
}

async function step(name, body) {
  const started = performance.now();
  try {
    const details = await body();
    emit(name, { elapsed_ms: Math.round(performance.now() - started), ...details });
    return details;
  } catch (error) {
    if (error instanceof Unexpected) {
      process.stdout.write(
        `${JSON.stringify({ step: name, ok: false, error: error.message, details: error.details })}\n`,
      );
      emitTraffic();
      process.exit(1);
    }
    return fail(name, error);
  }
}

// -- a. uploads through fal.storage.upload --------------------------------------------------------

const FILES = {
  clip: ["clip.mp4", "video/mp4"],
  still: ["still.png", "image/png"],
  music: ["music.wav", "audio/wav"],
  voice: ["voice.wav", "audio/wav"],
};
const bytesOf = {};
for (const [key, [fileName]] of Object.entries(FILES)) {
  try {
    bytesOf[key] = await readFile(path.join(mediaDir, fileName));
  } catch (error) {
    fail("media", error);
  }
}

const urls = {};
await step("upload", async () => {
  const sizes = {};
  const fetched = {};
  for (const [key, [, type]] of Object.entries(FILES)) {
    urls[key] = await fal.storage.upload(new Blob([bytesOf[key]], { type }));
    check(typeof urls[key] === "string" && /^https?:\/\//.test(urls[key]),
      `storage.upload returned no absolute URL for ${key}`, { returned: urls[key] });
    sizes[key] = bytesOf[key].length;
    const back = await download(urls[key]);
    fetched[key] = {
      status: back.status,
      length: back.bytes.length,
      content_type: back.content_type,
      same_bytes: sha256(back.bytes) === sha256(bytesOf[key]),
    };
    check(back.status === 200 && back.bytes.length === bytesOf[key].length && fetched[key].same_bytes,
      `the bytes fetched back from ${urls[key]} differ from the upload`, fetched[key]);
  }
  return { urls, sizes, fetched };
});

// -- b. metadata, streaming status (what the editor's getMediaMetadata does) ----------------------

await step("metadata_streaming", async () => {
  const updates = [];
  const result = await fal.subscribe("fal-ai/ffmpeg-api/metadata", {
    input: { media_url: urls.clip, extract_frames: true },
    mode: "streaming",
    onQueueUpdate: (update) => updates.push(update.status),
  });
  const media = result.data?.media;
  check(media && typeof media === "object", "no data.media in the metadata result", result);
  return {
    requestId: result.requestId,
    duration: media.duration,
    media_type: media.media_type,
    start_frame_url: media.start_frame_url,
    end_frame_url: media.end_frame_url,
    statuses: updates,
    media: summariseMedia(media),
  };
});

// -- c. metadata, polling status -------------------------------------------------------------------

await step("metadata_polling", async () => {
  const updates = [];
  const result = await fal.subscribe("fal-ai/ffmpeg-api/metadata", {
    input: { media_url: urls.music, extract_frames: true },
    mode: "polling",
    pollInterval: 200,
    onQueueUpdate: (update) => updates.push(update.status),
  });
  const media = result.data?.media;
  check(media && typeof media === "object", "no data.media in the metadata result", result);
  return {
    requestId: result.requestId,
    duration: media.duration,
    media_type: media.media_type,
    sample_rate: media.sample_rate,
    channels: media.channels,
    statuses: updates,
    media: summariseMedia(media),
  };
});

// -- c2. a Blob as input: the client uploads it itself (storage.transformInput) before submitting --

await step("metadata_blob_input", async () => {
  const before = traffic.length;
  const result = await fal.subscribe("fal-ai/ffmpeg-api/metadata", {
    input: { media_url: new Blob([bytesOf.voice], { type: "audio/wav" }) },
    mode: "polling",
    pollInterval: 200,
  });
  const media = result.data?.media;
  check(media && typeof media === "object", "no data.media in the metadata result", result);
  const uploads = traffic.slice(before).filter((call) => call.method === "PUT").map((call) => call.url);
  return {
    requestId: result.requestId,
    duration: media.duration,
    media_type: media.media_type,
    url: media.url,
    upload_puts: uploads,
  };
});

// -- d. waveform (polling, the default mode), fal's defaults and then the editor's input ----------

await step("waveform", async () => {
  const defaults = await fal.subscribe("fal-ai/ffmpeg-api/waveform", {
    input: { media_url: urls.music },
  });
  // src/components/video/track.tsx sends points_per_second 5 and precision 3.
  const editor = await fal.subscribe("fal-ai/ffmpeg-api/waveform", {
    input: { media_url: urls.music, points_per_second: 5, precision: 3 },
  });
  for (const result of [defaults, editor]) {
    check(Array.isArray(result.data?.waveform), "data.waveform is not an array", result.data);
  }
  const decimals = (value) => (String(value).split(".")[1] ?? "").length;
  return {
    requestId: defaults.requestId,
    length: defaults.data.waveform.length,
    duration: defaults.data.duration,
    points: defaults.data.points,
    precision: defaults.data.precision,
    editor_length: editor.data.waveform.length,
    editor_points: editor.data.points,
    editor_precision: editor.data.precision,
    editor_max_decimals: Math.max(0, ...editor.data.waveform.map(decimals)),
    editor_all_numbers: editor.data.waveform.every((value) => typeof value === "number"),
    min: Math.min(...editor.data.waveform),
    max: Math.max(...editor.data.waveform),
  };
});

// -- e. export: a 3-track timeline like export-dialog.tsx sends it ---------------------------------

await step("compose", async () => {
  const tracks = [
    {
      id: crypto.randomUUID(),
      type: "video",
      keyframes: [
        { timestamp: 0, duration: 2000, url: urls.clip },
        { timestamp: 2000, duration: 1500, url: urls.still },
      ],
    },
    { id: crypto.randomUUID(), type: "audio", keyframes: [{ timestamp: 0, duration: 3500, url: urls.music }] },
    { id: crypto.randomUUID(), type: "audio", keyframes: [{ timestamp: 500, duration: 1000, url: urls.voice }] },
  ];
  const updates = [];
  const result = await fal.subscribe("fal-ai/ffmpeg-api/compose", {
    input: { tracks },
    mode: "polling",
    pollInterval: 500,
    onQueueUpdate: (update) => updates.push(update.status),
  });
  check(typeof result.data?.video_url === "string" && typeof result.data?.thumbnail_url === "string",
    "compose returned no video_url / thumbnail_url strings", result.data);
  return {
    requestId: result.requestId,
    video_url: result.data.video_url,
    thumbnail_url: result.data.thumbnail_url,
    statuses: updates,
  };
});

// -- f. bad input: a 422 must surface as the client's ValidationError -----------------------------

await step("validation_error", async () => {
  let caught;
  try {
    // media-panel.tsx can call getMediaMetadata with media_url null when a result failed.
    await fal.subscribe("fal-ai/ffmpeg-api/metadata", { input: { media_url: null } });
  } catch (error) {
    caught = error;
  }
  check(caught !== undefined, "subscribe with media_url null did not throw");
  const isValidationError = caught instanceof falModule.ValidationError;
  check(caught instanceof falModule.ApiError,
    "subscribe with media_url null threw something that is not the client's ApiError",
    describeError(caught));
  let fieldErrors;
  let mediaUrlErrors;
  try {
    fieldErrors = caught.fieldErrors;
    mediaUrlErrors = caught.getFieldErrors?.("media_url");
  } catch (error) {
    fieldErrors = { error: String(error) };
  }
  return {
    constructor: caught.constructor?.name,
    name: caught.name,
    instance_of_validation_error: isValidationError,
    status: caught.status,
    message: caught.message,
    requestId: caught.requestId,
    fieldErrors,
    media_url_errors: mediaUrlErrors,
    body: caught.body,
  };
});

// -- f2. an image from Flux, with exactly the input the editor sends (right-panel.tsx) -------------

const flux = await step("flux_image", async () => {
  const result = await fal.subscribe("fal-ai/flux/dev", {
    input: { prompt: "Coffee beans falling", image_size: "landscape_16_9", aspect_ratio: "16:9", seconds_total: 30 },
    mode: mode === "editor" ? "polling" : "streaming",
    pollInterval: 250,
  });
  const image = result.data?.images?.[0];
  check(image && typeof image.url === "string", "no data.images[0].url in the flux result", result.data);
  const back = await download(image.url);
  return { requestId: result.requestId, image, seed: result.data.seed, status: back.status,
    downloaded_type: back.content_type, downloaded_length: back.bytes.length };
});

// -- f3. "Make Video" on that image (media-gallery.tsx): {model}/image-to-video, seconds_total dropped,
// then the metadata call the editor makes for every finished item ----------------------------------

await step("make_video", async () => {
  const image = flux.image;
  const result = await fal.subscribe("fal-ai/minimax/video-01-live/image-to-video", {
    input: { prompt: "the coffee keeps falling", image_size: "landscape_16_9", aspect_ratio: "16:9",
      image_url: image.url },
    mode: mode === "editor" ? "polling" : "streaming",
    pollInterval: 250,
  });
  const video = result.data?.video;
  check(video && typeof video.url === "string", "no data.video.url in the video result", result.data);
  check(!("images" in result.data), "a video result must not carry images (the editor would show a still)",
    result.data);
  const meta = await fal.subscribe("fal-ai/ffmpeg-api/metadata", {
    input: { media_url: video.url, extract_frames: true },
  });
  const back = await download(video.url);
  return { requestId: result.requestId, video, keys: Object.keys(result.data), status: back.status,
    downloaded_type: back.content_type, downloaded_length: back.bytes.length,
    metadata: summariseMedia(meta.data.media) };
});

// -- f4. music from the editor's default music model, then its timeline waveform (track.tsx) ------

await step("music", async () => {
  // The editor's input plus `steps`, a thorgen extra that keeps the tiny model quick.
  const result = await fal.subscribe("fal-ai/minimax-music", {
    input: { prompt: "lofi beats", image_size: "landscape_16_9", aspect_ratio: "16:9", seconds_total: 30, steps: 4 },
    mode: "polling",
    pollInterval: 250,
  });
  const audio = result.data?.audio;
  check(audio && typeof audio.url === "string", "no data.audio.url in the music result", result.data);
  const back = await download(audio.url);
  const waveform = await fal.subscribe("fal-ai/ffmpeg-api/waveform", {
    input: { media_url: audio.url, points_per_second: 5, precision: 3 },
  });
  return { requestId: result.requestId, audio, status: back.status, downloaded_type: back.content_type,
    downloaded_length: back.bytes.length, waveform_length: waveform.data?.waveform?.length };
});

if (mode === "latest") {
  await step("flux_image_to_image_blob", async () => {
    const result = await fal.subscribe("fal-ai/flux/dev/image-to-image", {
      input: { prompt: "make it red", image_url: new Blob([bytesOf.still], { type: "image/png" }),
        strength: 0.5, num_inference_steps: 4, seed: 3 },
    });
    const image = result.data?.images?.[0];
    check(image && typeof image.url === "string", "no data.images[0].url in the image-to-image result", result.data);
    return { requestId: result.requestId, image, seed: result.data.seed };
  });
}

// -- f5. a voiceover with exactly the input the editor's default voiceover sends (right-panel.tsx) ---

// Speech needs the tts extra (NeMo); where it is not installed the step says so instead.
const listing = await (await rawFetch(`${base}/endpoints`)).json();
const speechReady = listing.endpoints.some((row) => row.id === "fal-ai/playht/tts/v3" && row.available);
await step("voiceover", async () => {
  if (!speechReady) return { skipped: "fal-ai/playht/tts/v3 is not available here (the tts extra?)" };
  const text = "Coffee beans falling into a cup.";
  const result = await fal.subscribe("fal-ai/playht/tts/v3", {
    input: { prompt: text, input: text, voice: "Dexter (English (US)/American)", image_size: "landscape_16_9",
      aspect_ratio: "16:9", seconds_total: 30 },
    mode: mode === "editor" ? "polling" : "streaming",
    pollInterval: 250,
  });
  const audio = result.data?.audio;
  check(audio && typeof audio.url === "string", "no data.audio.url in the voiceover result", result.data);
  const back = await download(audio.url);
  return { requestId: result.requestId, audio, status: back.status, downloaded_type: back.content_type,
    downloaded_length: back.bytes.length };
});

// -- f6. Kokoro voices and LTX key frames, each with the editor's input (editor mode only: time) ------

if (mode === "editor") {
  const kokoroReady = listing.endpoints.some((row) => row.id === "fal-ai/kokoro/american-english"
    && row.available && row.model === "kokoro");
  await step("kokoro_voices", async () => {
    if (!kokoroReady) return { skipped: "Kokoro is not what answers fal-ai/kokoro/american-english here" };
    const speak = async (voice) => {
      const result = await fal.subscribe("fal-ai/kokoro/american-english", {
        input: { prompt: "Coffee beans falling.", voice, image_size: "landscape_16_9", aspect_ratio: "16:9",
          seconds_total: 30 },
        mode: "polling",
        pollInterval: 250,
      });
      const audio = result.data?.audio;
      check(audio && typeof audio.url === "string", "no data.audio.url in the kokoro result", result.data);
      const back = await download(audio.url);
      return { audio, status: back.status, downloaded_type: back.content_type, sha256: sha256(back.bytes) };
    };
    return { heart: await speak("af_heart"), again: await speak("af_heart"), adam: await speak("am_adam") };
  });

  await step("ltx_key_frames", async () => {
    // The frame picker's key frames: a gallery image, an uploaded URL, and a File it auto-uploads.
    const images = [
      { start_frame_num: 0, image_url: flux.image.url },
      { start_frame_num: 8, image_url: urls.still },
      { start_frame_num: 16, image_url: new Blob([bytesOf.still], { type: "image/png" }) },
    ];
    const result = await fal.subscribe("fal-ai/ltx-video-v095/multiconditioning/image-to-video", {
      input: { prompt: "Coffee beans falling", image_size: "landscape_16_9", aspect_ratio: "16:9",
        seconds_total: 30, images },
      mode: "polling",
      pollInterval: 250,
      logs: true,
    });
    const video = result.data?.video;
    check(video && typeof video.url === "string", "no data.video.url in the LTX result", result.data);
    const back = await download(video.url);
    return { requestId: result.requestId, video, keys: Object.keys(result.data), status: back.status,
      downloaded_type: back.content_type, downloaded_length: back.bytes.length };
  });
}

// -- g. the queue API by hand (media-panel.tsx: submit, then status until COMPLETED, then result) --

await step("queue_by_hand", async () => {
  const logs = mode === "latest"; // the editor never asks for logs
  const endpoint = "fal-ai/ffmpeg-api/metadata";
  const submitted = await fal.queue.submit(endpoint, { input: { media_url: urls.clip } });
  check(typeof submitted?.request_id === "string" && submitted.request_id.length > 0,
    "queue.submit gave no request_id", submitted);
  const statuses = [];
  let status;
  let logCount = 0;
  const deadline = Date.now() + 60_000;
  for (;;) {
    status = await fal.queue.status(endpoint, { requestId: submitted.request_id, logs });
    statuses.push(status.status);
    if (Array.isArray(status.logs)) {
      logCount = Math.max(logCount, status.logs.length);
    }
    if (status.status === "COMPLETED") {
      break;
    }
    check(Date.now() < deadline, "the request did not complete within 60 s", status);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const result = await fal.queue.result(endpoint, { requestId: submitted.request_id });
  return {
    request_id: submitted.request_id,
    submit_keys: Object.keys(submitted).sort(),
    status_url: submitted.status_url,
    response_url: submitted.response_url,
    statuses,
    completed_logs: status.logs === undefined ? "absent" : Array.isArray(status.logs) ? status.logs.length : status.logs,
    max_logs: logCount,
    log_sample: Array.isArray(status.logs) ? status.logs.slice(0, 3) : null,
    result_request_id: result.requestId,
    duration: result.data?.media?.duration,
  };
});

// -- h. (latest only) the sync run API: fal.run goes to https://fal.run/... through the proxy ------

if (mode === "latest") {
  await step("run", async () => {
    const result = await fal.run("fal-ai/ffmpeg-api/extract-frame", {
      input: { video_url: urls.clip, frame_type: "last" },
    });
    const images = result.data?.images;
    check(Array.isArray(images) && images.length === 1 && typeof images[0].url === "string",
      "fal.run extract-frame gave no images[0].url", result.data);
    return { requestId: result.requestId, image: images[0] };
  });
}

clearTimeout(watchdog);
emitTraffic();
process.stdout.write(`${JSON.stringify({ step: "done", ok: true, mode })}\n`);
