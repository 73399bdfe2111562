// A local HTTPS server impersonating an art site's upload form (Tumblr's media upload endpoint,
// per ../shared/docs/SITES.md), with a throwaway self-signed certificate for the site's names.
// It records every image it receives so the test can compare bytes.

import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";

export const SITE_HOST = "www.tumblr.com";
/** A portfolio site Sfumato has no profile for (the "Protect this site" case). */
export const CUSTOM_HOST = "www.inkwell.example";
export const UPLOAD_PATH = "/api/v2/media/image";

/** base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate, for --ignore-certificate-errors-spki-list. */
export function spkiHash(pem) {
  const spki = new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

function makeCertificate(dir) {
  const key = path.join(dir, "site-key.pem");
  const cert = path.join(dir, "site-cert.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${SITE_HOST}`,
    "-addext", `subjectAltName=DNS:${SITE_HOST},DNS:tumblr.com,DNS:${CUSTOM_HOST}`,
  ], { stdio: "ignore" });
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Post a photo (test double)</title></head>
<body>
<h1>Post a photo</h1>
<form id="upload">
  <label>Artwork <input id="file" type="file" name="file" accept="image/*"></label>
  <button type="submit">Post</button>
</form>
<output id="result" data-n="0"></output>
<script>
document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = document.getElementById("result");
  const body = new FormData();
  body.append("caption", "my new piece");
  body.append("file", document.getElementById("file").files[0]);
  try {
    const res = await fetch("${UPLOAD_PATH}", { method: "POST", body });
    out.dataset.status = String(res.status);
    out.dataset.error = res.headers.get("X-Sfumato-Error") || "";
    out.textContent = res.status + " " + (await res.text()).slice(0, 300);
  } catch (err) {
    out.dataset.status = "network-error";
    out.dataset.error = "";
    out.textContent = String(err);
  }
  out.dataset.n = String(Number(out.dataset.n) + 1);
});
</script>
</body></html>`;

/** The file part named `field` of a multipart body (bytes kept exactly), or null. */
export function multipartFile(body, contentType, field) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType || "");
  if (!m) return null;
  const delimiter = Buffer.from(`--${m[1] || m[2]}`);
  let start = body.indexOf(delimiter);
  while (start >= 0) {
    const next = body.indexOf(delimiter, start + delimiter.length);
    if (next < 0) break;
    const part = body.subarray(start + delimiter.length + 2, next - 2); // skip CRLF after, before
    const split = part.indexOf("\r\n\r\n");
    const headers = part.subarray(0, split).toString("latin1");
    if (new RegExp(`name="${field}"`).test(headers)) return Buffer.from(part.subarray(split + 4));
    start = next;
  }
  return null;
}

/** Start the site on a free loopback port. Returns {port, cert, received: [Buffer], close()}. */
export async function startArtSite(dir) {
  const { key, cert } = makeCertificate(dir);
  const received = [];
  const server = https.createServer({ key, cert }, (req, res) => {
    if (req.method === "GET") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end(PAGE);
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const file = req.method === "POST" && req.url === UPLOAD_PATH ? multipartFile(Buffer.concat(chunks), req.headers["content-type"], "file") : null;
      if (!file) {
        res.writeHead(400, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: "no file part" }));
        return;
      }
      received.push(file);
      res.writeHead(201, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ bytes: file.length, sha256: createHash("sha256").update(file).digest("hex") }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    cert: cert.toString(),
    received,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}
