// tus-js-client in Node against the gateway (issue 13). One JSON line per event on
// stdout. Usage:
//   node upload.mjs --endpoint URL --file PATH [--stop-at BYTES] [--upload-url URL]
//                   [--chunk-size BYTES]
// --stop-at aborts the upload once that many bytes were sent (the process then exits,
// as a client losing its network would); --upload-url resumes an existing upload.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as tus from "tus-js-client";

const { values } = parseArgs({
  options: {
    endpoint: { type: "string" },
    file: { type: "string" },
    "stop-at": { type: "string" },
    "upload-url": { type: "string" },
    "chunk-size": { type: "string" },
  },
});
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const data = readFileSync(values.file);
const stopAt = values["stop-at"] ? Number(values["stop-at"]) : null;

const upload = new tus.Upload(data, {
  endpoint: values.endpoint,
  uploadUrl: values["upload-url"] || null,
  chunkSize: values["chunk-size"] ? Number(values["chunk-size"]) : Infinity,
  retryDelays: [0, 500, 1000],
  storeFingerprintForResuming: false,
  metadata: { filename: "tus.wav", filetype: "audio/wav" },
  onAfterResponse(req, res) {
    const method = req.getMethod();
    if (method === "POST") {
      say({ event: "created", status: res.getStatus(), url: res.getHeader("Location"), body: JSON.parse(res.getBody()) });
    } else if (method === "HEAD") {
      say({ event: "head", status: res.getStatus(), offset: Number(res.getHeader("Upload-Offset")) });
    } else if (method === "PATCH") {
      say({ event: "patched", status: res.getStatus(), offset: Number(res.getHeader("Upload-Offset")) });
    }
  },
  onProgress(sent, total) {
    if (stopAt !== null && sent >= stopAt) {
      upload.abort(false).then(() => {
        say({ event: "stopped", sent, url: upload.url });
        process.exit(0);
      });
    }
  },
  onError(error) {
    say({ event: "error", message: String(error) });
    process.exit(1);
  },
  onSuccess() {
    say({ event: "success", url: upload.url });
  },
});
upload.start();
