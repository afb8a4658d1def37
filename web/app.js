// The demo page: upload with progress, then follow the job over Server-Sent Events.
"use strict";

const STAGES = {
  accepted: "accepted", uploading: "storing", uploaded: "stored",
  analyzing: "analysing", completed: "completed", failed: "failed",
};

const drop = document.getElementById("drop");
const input = document.getElementById("file");
input.addEventListener("change", () => { for (const f of input.files) upload(f); input.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  for (const f of e.dataTransfer.files) upload(f);
});

function newCard(name) {
  const card = document.getElementById("card").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  document.getElementById("jobs").prepend(card);
  return {
    el: card,
    stage(text, cls) { card.querySelector(".stage").textContent = text; if (cls) card.className = "card " + cls; },
    progress(v) { card.querySelector("progress").value = v; },
    message(text, isError) { const m = card.querySelector(".message"); m.textContent = text; m.classList.toggle("error", !!isError); },
  };
}

function upload(file) {
  const card = newCard(file.name);
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/tokens/demo/upload-audio");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      card.message(`sent ${formatBytes(e.loaded)} of ${formatBytes(e.total)}`);
    }
  };
  xhr.onerror = () => { card.stage("failed", "failed"); card.message("The upload could not reach the server.", true); };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status !== 202) {
      card.stage("refused", "failed");
      card.message(body.error ? body.error.message : `The server answered ${xhr.status}.`, true);
      return;
    }
    card.message(`${formatBytes(body.size)} received as ${body.content_type}`);
    follow(card, body);
  };
  xhr.send(form);
}

function follow(card, job) {
  // The upload response set an HttpOnly cookie for this path, as the seed expects.
  const es = new EventSource(job.progress_url);
  es.onmessage = (event) => {
    const data = JSON.parse(event.data);
    card.stage(STAGES[data.status] || data.status, data.status);
    card.progress(data.progress);
    if (data.detail) card.message(data.detail);
    if (data.status === "completed") { es.close(); showResult(card, data.result); }
    if (data.status === "failed") { es.close(); card.message(describeError(data.error), true); }
  };
}

function describeError(error) {
  const text = {
    analysis_timeout: "The analysis server did not answer in time.",
    analysis_rejected: "The analysis server refused this file.",
    invalid_audio: "The file could not be decoded as audio.",
    checksum_mismatch: "The stored file did not match what was sent.",
  }[error && error.code];
  return text || (error && error.message) || "The job failed.";
}

function showResult(card, r) {
  card.message("Analysis complete.");
  const rows = [
    ["Duration", `${r.duration_seconds.toFixed(2)} s`],
    ["Sample rate", `${r.sample_rate} Hz`],
    ["Channels", r.channels],
    ["Format", [r.format, r.subtype].filter(Boolean).join(" / ")],
    ["RMS level", `${r.rms_dbfs.toFixed(1)} dBFS`],
    ["Peak level", `${r.peak_dbfs.toFixed(1)} dBFS`],
    ["Silence", `${(r.silence_ratio * 100).toFixed(1)} %`],
  ];
  const table = card.el.querySelector(".result");
  const tbody = table.querySelector("tbody");
  for (const [k, v] of rows) {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  table.hidden = false;
  if (r.envelope && r.envelope.length) drawEnvelope(card.el.querySelector(".envelope"), r.envelope);
}

function drawEnvelope(canvas, points) {
  canvas.hidden = false;
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, mid = h / 2, step = w / points.length;
  ctx.fillStyle = "#2f6fde";
  points.forEach((p, i) => {
    const bar = Math.max(1, p * (h - 4));
    ctx.fillRect(i * step, mid - bar / 2, Math.max(1, step - 1), bar);
  });
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
