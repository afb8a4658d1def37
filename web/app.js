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
};
const JOB_ERRORS = {
  analysis_timeout: "The analysis server did not answer in time.",
  analysis_rejected: "The analysis server refused this file.",
  invalid_audio: "The file could not be decoded as audio.",
  checksum_mismatch: "The stored file did not match what was sent.",
  storage_failed: "The file could not be stored.",
};

const queue = [];
let active = 0;

setUpPicker(document.getElementById("drop"), document.getElementById("file"));

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

function addFiles(files) {
  for (const file of files) queue.push({ file, card: new Card(file) });
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
  try {
    job = await send(file, card);
  } catch (problem) {
    card.fail(problem.message, "refused");
    return;
  }
  card.accepted(job);
  await follow(job, card);
}

// XMLHttpRequest rather than fetch: only it reports upload progress.
function send(file, card) {
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
      else reject(new Error(uploadError(xhr.status, body.error)));
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

function showResult(card, r) {
  const rows = [
    ["Duration", `${r.duration_seconds.toFixed(2)} s`],
    ["Sample rate", `${r.sample_rate.toLocaleString("en-US")} Hz`],
    ["Channels", `${r.channels}${{ 1: " (mono)", 2: " (stereo)" }[r.channels] || ""}`],
    ["Format", [r.format, r.subtype].filter(Boolean).join(" / ") || "unknown"],
    ["RMS level", `${r.rms_dbfs.toFixed(1)} dBFS`],
    ["Peak level", `${r.peak_dbfs.toFixed(1)} dBFS`],
    ["Silence", `${(r.silence_ratio * 100).toFixed(1)} %`],
  ];
  const tbody = card.$(".facts tbody");
  tbody.replaceChildren();
  for (const [name, value] of rows) {
    const tr = tbody.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = name;
    tr.append(th);
    tr.insertCell().textContent = value;
  }
  card.$(".result").hidden = false;
  const figure = card.$("figure");
  figure.hidden = !(r.envelope && r.envelope.length);
  if (!figure.hidden) drawEnvelope(card.$(".envelope"), r.envelope);
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
