// The demo page: send each file with upload progress, then follow its job over
// Server-Sent Events until it is completed or failed, and show the analysis.
"use strict";

// Browsers open at most 6 HTTP/1.1 connections per origin, and every job holds one (its
// upload, then its progress stream); a few at a time leaves room for everything else.
const MAX_ACTIVE = 3;
const ORDER = ["sending", "accepted", "uploading", "uploaded", "analyzing", "completed"];
const DETAIL = {
  accepted: "Received; waiting to be stored.",
  uploading: "Storing the file in S3…",
  uploaded: "Stored; waiting for the analysis server…",
  analyzing: "Analyzing…",
};
const UPLOAD_ERRORS = {
  too_large: "This file is larger than the server accepts.",
  not_audio: "This file is not audio the server understands (WAV, FLAC, MP3, OGG/Opus, M4A or WebM).",
  unsupported_media_type: "The upload was not sent as a file form.",
  empty_file: "This file is empty.",
  missing_file: "No file was sent.",
  incomplete_body: "The upload was cut off before the whole file arrived.",
  unavailable: "The server cannot take uploads right now; try again in a moment.",
  unauthorized: "The server needs you to sign in before uploading.",
  too_many_uploads: "Too many uploads from you in a short time.",
  too_many_open_uploads: "You have as many uploads open as the server takes at once.",
  server_busy: "The server is busy receiving other uploads.",
  daily_bytes_exceeded: "You have uploaded as much as the server takes in a day; try again tomorrow.",
};
// Fair-use refusals (429) that lift by themselves: the upload waits its turn
// (Retry-After) and is sent again, a few times at most.
const WAIT_CODES = new Set(["too_many_uploads", "too_many_open_uploads", "server_busy"]);
const MAX_WAITS = 10;

class Refused extends Error {
  constructor(status, error, retryAfter) {
    super(uploadError(status, error));
    this.code = (error && error.code) || "";
    this.retryAfter = Number(retryAfter) || 5;
  }
}
const JOB_ERRORS = {
  analysis_timeout: "The analysis server did not answer in time.",
  analysis_rejected: "The analysis server refused this file.",
  invalid_audio: "The file could not be decoded as audio.",
  checksum_mismatch: "The stored file did not match what was sent.",
  storage_failed: "The file could not be stored.",
  analysis_failed: "The analysis server could not be reached.",
  analysis_invalid_result: "The analysis server sent a result that could not be used.",
};
// MediaRecorder records in the browser's own format: WebM/Opus in Chromium, Ogg/Opus in
// Firefox, MP4/AAC in Safari. The first one it supports is used, uploaded as it is.
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
const MICROPHONE_ERRORS = {
  NotAllowedError: "Microphone access was refused.",
  NotFoundError: "No microphone was found.",
  NotReadableError: "The microphone is in use by another program.",
};

const queue = [];
let active = 0;

setUpPicker(document.getElementById("drop"), document.getElementById("file"));
setUpRecorder(document.getElementById("record"), document.getElementById("record-note"));

function setUpPicker(drop, input) {
  input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  // A file dropped beside the zone would otherwise replace the page with the file.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

// One button: Record, then Stop; each recording becomes a file and a job of its own.
function setUpRecorder(button, note) {
  const label = button.querySelector(".record-label");
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder)) {
    button.disabled = true;
    note.textContent = "This browser cannot record from a microphone here.";
    return;
  }
  let recording = null;
  const idle = () => {
    recording = null;
    button.disabled = false;
    button.classList.remove("recording");
    button.setAttribute("aria-pressed", "false");
    label.textContent = "Record";
  };
  button.addEventListener("click", async () => {
    if (recording) {
      const current = recording;
      button.disabled = true;
      try {
        const file = await current.stop();
        addFiles([file], { recordedSeconds: current.seconds });
        note.textContent = `Recorded ${current.seconds.toFixed(1)} s; uploading it as a job.`;
      } catch (problem) {
        note.textContent = `The recording failed: ${problem.message}`;
      }
      idle();
      return;
    }
    button.disabled = true;
    try {
      recording = await Recording.start((seconds) => {
        label.textContent = `Stop · ${seconds.toFixed(1)} s`;
      });
    } catch (problem) {
      note.textContent = MICROPHONE_ERRORS[problem.name] || `The microphone could not be used: ${problem.message}`;
      idle();
      return;
    }
    button.disabled = false;
    button.classList.add("recording");
    button.setAttribute("aria-pressed", "true");
    label.textContent = "Stop · 0.0 s";
    note.textContent = "Recording… press Stop to upload it.";
  });
}

class Recording {
  static async start(onTick) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const mimeType = RECORDING_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    try {
      const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
      const recording = new Recording(stream, recorder, onTick);
      await recording.started;
      return recording;
    } catch (problem) {
      for (const track of stream.getTracks()) track.stop();
      throw problem;
    }
  }

  constructor(stream, recorder, onTick) {
    this.recorder = recorder;
    this.chunks = [];
    this.seconds = 0;
    recorder.ondataavailable = (e) => { if (e.data.size) this.chunks.push(e.data); };
    this.started = new Promise((resolve) => {
      recorder.onstart = () => { this.startedAt = performance.now(); resolve(); };
    });
    this.stopped = new Promise((resolve, reject) => {
      recorder.onstop = () => { for (const track of stream.getTracks()) track.stop(); resolve(); };
      recorder.onerror = (e) => reject(e.error || new Error("the recorder stopped"));
    });
    recorder.start();
    this.timer = setInterval(() => onTick(this.elapsed()), 100);
  }

  elapsed() {
    return this.startedAt === undefined ? 0 : (performance.now() - this.startedAt) / 1000;
  }

  async stop() {
    this.seconds = this.elapsed();
    clearInterval(this.timer);
    this.recorder.stop();
    await this.stopped;
    const type = (this.recorder.mimeType || (this.chunks[0] && this.chunks[0].type) || "audio/webm");
    const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    const stamp = new Date().toTimeString().slice(0, 8).replaceAll(":", "-");
    return new File(this.chunks, `recording-${stamp}.${extension}`, { type: type.split(";")[0] });
  }
}

function addFiles(files, { recordedSeconds } = {}) {
  for (const file of files) {
    const card = new Card(file);
    if (recordedSeconds !== undefined) card.recorded(recordedSeconds);
    queue.push({ file, card });
  }
  next();
}

function next() {
  while (active < MAX_ACTIVE && queue.length) {
    const { file, card } = queue.shift();
    active += 1;
    run(file, card).finally(() => { active -= 1; next(); });
  }
}

async function run(file, card) {
  let job;
  for (let waits = 0; job === undefined; waits += 1) {
    try {
      job = await send(file, card);
    } catch (problem) {
      if (!WAIT_CODES.has(problem.code) || waits >= MAX_WAITS) {
        card.fail(problem.message, "refused");
        return;
      }
      card.note(`${problem.message} Sending again in ${problem.retryAfter} s…`);
      await new Promise((r) => setTimeout(r, problem.retryAfter * 1000));
    }
  }
  card.accepted(job);
  await follow(job, card);
  card.deletable(job);
}

// Recordings are personal data: a finished job can be erased everywhere, its audio,
// analysis and history, with the job's own access token (docs/architecture.md, "Data
// lifecycle"). The progress URL's token could not do it: it only reads.
async function erase(job, card) {
  let answer;
  try {
    answer = await fetch(`/jobs/${job.job_id}`, {
      method: "DELETE", headers: { Authorization: `Bearer ${job.access_token}` },
    });
  } catch (_lost) {
    card.note("The server could not be reached; the job was not deleted.", true);
    return false;
  }
  if (answer.status === 202 || answer.status === 204 || answer.status === 410) {
    card.deleted();
    return true;
  }
  let error = {};
  try { error = (await answer.json()).error || {}; } catch (_) { /* not JSON */ }
  card.note(error.message || `The server answered ${answer.status}; the job was not deleted.`, true);
  return false;
}

// Files from this size on go up as resumable uploads (the IETF draft, interop version
// 8, docs/architecture.md section 12): in pieces, resumed from the server's offset
// after the network drops.
const RESUMABLE_FROM = 1024 * 1024;
const DRAFT = { "Upload-Draft-Interop-Version": "8" };

function send(file, card) {
  return file.size >= RESUMABLE_FROM ? sendResumable(file, card) : sendOnce(file, card);
}

async function sendResumable(file, card) {
  card.sending(0, file.size);
  const name = file.name.replace(/[^\x20-\x7e]|"/g, "_");
  const created = await request("POST", "/tokens/demo/upload-audio", {
    ...DRAFT, "Upload-Complete": "?0", "Upload-Length": String(file.size),
    "Content-Disposition": `inline; filename="${name}"`,
  }).catch(() => { throw new Error("The upload could not reach the server."); });
  if (created.status !== 201) {
    throw new Refused(created.status, created.body.error, created.xhr.getResponseHeader("Retry-After"));
  }
  const location = created.xhr.getResponseHeader("Location");
  const piece = Math.min(4 << 20, Math.max(256 << 10, Math.ceil(file.size / 8)));
  let offset = 0;
  let failures = 0;
  for (;;) {
    const end = Math.min(offset + piece, file.size);
    const last = end === file.size;
    let answer;
    try {
      answer = await request("PATCH", location, {
        ...DRAFT, "Content-Type": "application/partial-upload",
        "Upload-Offset": String(offset), "Upload-Complete": last ? "?1" : "?0",
      }, file.slice(offset, end), (loaded) => card.sending(offset + loaded, file.size));
    } catch (_lost) {
      failures += 1;
      if (failures > 30) throw new Error("The upload could not reach the server.");
      card.note("Connection lost; the upload resumes when it is back…");
      await online();
      await new Promise((r) => setTimeout(r, Math.min(250 * failures, 3000)));
      try {
        const head = await request("HEAD", location, DRAFT);
        if (head.status === 204) offset = Number(head.xhr.getResponseHeader("Upload-Offset"));
      } catch (_stillLost) { /* try again */ }
      continue;
    }
    failures = 0;
    if (answer.status === 409 && answer.xhr.getResponseHeader("Upload-Offset") !== null) {
      offset = Number(answer.xhr.getResponseHeader("Upload-Offset"));
    } else if (last && answer.status === 202) {
      return answer.body;
    } else if (answer.status === 204) {
      offset = end;
    } else if (answer.status === 429 && WAIT_CODES.has(answer.body.error && answer.body.error.code)) {
      const seconds = Number(answer.xhr.getResponseHeader("Retry-After")) || 5;
      card.note(`${uploadError(429, answer.body.error)} Sending on in ${seconds} s…`);
      await new Promise((r) => setTimeout(r, seconds * 1000));
    } else {
      throw new Refused(answer.status, answer.body.error, answer.xhr.getResponseHeader("Retry-After"));
    }
  }
}

function online() {
  if (navigator.onLine) return Promise.resolve();
  return new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
}

function request(method, url, headers, body = null, onProgress = null) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onerror = () => reject(new Error("network"));
    xhr.onload = () => {
      let parsed = {};
      try { parsed = JSON.parse(xhr.responseText); } catch (_) { /* no JSON body */ }
      resolve({ status: xhr.status, body: parsed, xhr });
    };
    xhr.send(body);
  });
}

// XMLHttpRequest rather than fetch: only it reports upload progress.
function sendOnce(file, card) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/tokens/demo/upload-audio");
    xhr.upload.onprogress = (e) => card.sending(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onerror = () => reject(new Error("The upload could not reach the server."));
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON: say the status */ }
      if (xhr.status === 202) resolve(body);
      else reject(new Refused(xhr.status, body.error, xhr.getResponseHeader("Retry-After")));
    };
    card.sending(0, file.size);
    xhr.send(form);
  });
}

function uploadError(status, error) {
  const code = (error && error.code) || (status === 413 ? "too_large" : "");
  if (code === "too_large") {
    // The gateway names its limit in the message ("larger than N bytes"); say it plainly.
    const limit = /(\d+) bytes/.exec((error && error.message) || "");
    if (limit) return `This file is larger than the server accepts (at most ${formatBytes(Number(limit[1]))}).`;
  }
  if (UPLOAD_ERRORS[code]) return UPLOAD_ERRORS[code];
  return (error && error.message) || `The server answered ${status}.`;
}

// Same origin, so the HttpOnly cookie the upload response set is all the stream needs,
// exactly as a page written for the seed does it; progress_url also carries the token.
function follow(job, card) {
  return new Promise((resolve) => {
    const stream = new EventSource(job.progress_url);
    const done = () => { stream.close(); resolve(); };
    stream.onmessage = (event) => {
      const data = JSON.parse(event.data);
      card.status(data);
      if (data.status === "completed") { card.complete(data.result); done(); }
      if (data.status === "failed") { card.fail(jobError(data.error)); done(); }
    };
    stream.onerror = () => {
      // CONNECTING: the browser reconnects by itself and resumes with Last-Event-ID.
      if (stream.readyState === EventSource.CONNECTING) card.note("Connection lost; reconnecting…");
      else { card.fail("Progress for this job is not available."); done(); }
    };
  });
}

function jobError(error) {
  return JOB_ERRORS[error && error.code] || (error && error.message) || "The job failed.";
}

class Card {
  constructor(file) {
    this.el = document.getElementById("card").content.firstElementChild.cloneNode(true);
    this.$(".name").textContent = file.name;
    this.$(".name").title = file.name;
    this.$(".meta").textContent = formatBytes(file.size);
    this.size = file.size;
    document.getElementById("jobs").prepend(this.el);
    this.note("Queued until an earlier upload is done…");
  }

  $(selector) { return this.el.querySelector(selector); }

  recorded(seconds) {
    this.el.dataset.recordedSeconds = seconds.toFixed(3);
    this.$(".meta").textContent = `recorded ${seconds.toFixed(1)} s · ${formatBytes(this.size)}`;
  }

  sending(sent, total) {
    this.stage("sending", "sending");
    this.bar(total ? (100 * sent) / total : 0);
    this.note(`Sent ${formatBytes(sent)} of ${formatBytes(total)}`);
  }

  accepted(job) {
    this.el.dataset.jobId = job.job_id;
    this.$(".meta").textContent = `${formatBytes(job.size)} · ${job.content_type}`;
    this.$(".job-id").textContent = `job ${job.job_id}`;
    this.status({ status: "accepted", progress: job.progress || 0 });
  }

  status(data) {
    this.stage(data.status, data.status);
    this.bar(data.progress);
    if (DETAIL[data.status]) this.note(DETAIL[data.status]);
  }

  complete(result) {
    this.note("Analysis complete.");
    showResult(this, result);
  }

  deletable(job) {
    const button = this.$(".delete");
    button.hidden = false;
    button.onclick = async () => {
      button.disabled = true;
      if (!(await erase(job, this))) button.disabled = false;
    };
  }

  deleted() {
    this.el.dataset.status = "deleted";
    this.$(".badge").textContent = "deleted";
    this.$(".result").hidden = true;
    this.$(".delete").hidden = true;
    this.note("Deleted: its recording, analysis and history are erased everywhere.");
  }

  fail(sentence, badge = "failed") {
    this.stage("failed", badge);
    this.note(sentence, true);
  }

  stage(status, badge) {
    const reached = ORDER.indexOf(status);
    this.el.dataset.status = status;
    this.$(".badge").textContent = badge;
    for (const li of this.el.querySelectorAll(".stages li")) {
      const at = ORDER.indexOf(li.dataset.stage);
      if (reached >= 0) {
        li.classList.toggle("done", at < reached || status === "completed");
        li.classList.toggle("current", at === reached && status !== "completed");
      } else if (li.classList.contains("current")) {
        li.classList.replace("current", "broken");  // failed: mark where it stopped
      }
    }
  }

  bar(percent) {
    const value = Math.max(0, Math.min(100, Math.round(percent || 0)));
    this.$(".bar").setAttribute("aria-valuenow", String(value));
    this.$(".fill").style.width = `${value}%`;
  }

  note(text, isError = false) {
    const message = this.$(".message");
    message.textContent = text;
    message.classList.toggle("error", isError);
  }
}

// The analysis server's result is its own JSON object: the well-known fields are shown
// where present (in this order, each only when it has its documented type), and every
// other field is listed as it came.
const CHANNELS = { 1: " (mono)", 2: " (stereo)" };
const KNOWN = [
  ["duration_seconds", "Duration", (v) => `${v.toFixed(2)} s`],
  ["sample_rate", "Sample rate", (v) => `${v.toLocaleString("en-US")} Hz`],
  ["channels", "Channels", (v) => `${v}${CHANNELS[v] || ""}`],
  ["frames", "Frames", (v) => v.toLocaleString("en-US")],
  ["rms_dbfs", "RMS level", (v) => `${v.toFixed(1)} dBFS`],
  ["peak_dbfs", "Peak level", (v) => `${v.toFixed(1)} dBFS`],
  ["true_peak_dbtp", "True peak", (v) => `${v.toFixed(1)} dBTP`],
  ["integrated_lufs", "Integrated loudness", (v) => `${v.toFixed(1)} LUFS`],
  ["loudness_range_lu", "Loudness range", (v) => `${v.toFixed(1)} LU`],
  ["silence_ratio", "Silence", (v) => `${(v * 100).toFixed(1)} %`],
];

function showResult(card, result) {
  const r = result && typeof result === "object" && !Array.isArray(result) ? result : {};
  const shown = new Set();
  const rows = [];
  for (const [key, name, format] of KNOWN) {
    if (typeof r[key] !== "number" || !Number.isFinite(r[key])) continue;
    rows.push([name, format(r[key])]);
    shown.add(key);
  }
  const format = ["format", "subtype"].filter((k) => typeof r[k] === "string" && r[k]);
  if (format.length) {
    rows.splice(Math.min(rows.length, 3), 0, ["Format", format.map((k) => r[k]).join(" / ")]);
    for (const k of format) shown.add(k);
  }
  const envelope = Array.isArray(r.envelope) && r.envelope.length && r.envelope.every((p) => typeof p === "number");
  if (envelope) shown.add("envelope");
  fillTable(card.$(".facts tbody"), rows);

  const others = Object.keys(r).filter((k) => !shown.has(k)).map((k) => [k, describe(r[k])]);
  fillTable(card.$(".extra tbody"), others);
  card.$(".extra").hidden = others.length === 0;
  card.$(".facts").hidden = rows.length === 0;

  card.$(".result").hidden = false;
  const figure = card.$("figure");
  figure.hidden = !envelope;
  if (envelope) drawEnvelope(card.$(".envelope"), r.envelope);
}

function fillTable(tbody, rows) {
  tbody.replaceChildren();
  for (const [name, value] of rows) {
    const tr = tbody.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = name;
    tr.append(th);
    tr.insertCell().textContent = value;
  }
}

// A value of a field the page does not know, as text: strings as they are, anything
// else as JSON, cut short so that one large field does not take over the card.
function describe(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 300 ? `${text.slice(0, 299)}…` : text;
}

// The envelope is the peak level (0..1) of equal slices: drawn as a mirrored waveform.
function drawEnvelope(canvas, points) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600, height = canvas.clientHeight || 72;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const mid = height / 2, step = width / points.length, gap = step > 3 ? 1 : 0;
  ctx.fillStyle = getComputedStyle(canvas).color;
  points.forEach((p, i) => {
    const bar = Math.max(1, Math.min(1, p) * (height - 4));
    ctx.fillRect(i * step, mid - bar / 2, Math.max(1, step - gap), bar);
  });
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
