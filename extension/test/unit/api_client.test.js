import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiClient, ApiError, isLoopbackBase, normalizeApiBase } from "../../src/lib/api_client.js";

test("backend addresses are normalised to an origin, default port 8765", () => {
  assert.equal(normalizeApiBase("127.0.0.1"), "http://127.0.0.1:8765");
  assert.equal(normalizeApiBase(" 127.0.0.1:9000/ "), "http://127.0.0.1:9000");
  assert.equal(normalizeApiBase("http://homeserver.lan:8765/v1"), "http://homeserver.lan:8765");
  assert.equal(normalizeApiBase("https://sfumato.example"), "https://sfumato.example");
  assert.throws(() => normalizeApiBase(""), TypeError);
  assert.throws(() => normalizeApiBase("http://"), TypeError);
  assert.ok(isLoopbackBase("http://localhost:8765"));
  assert.ok(isLoopbackBase("http://[::1]:8765"));
  assert.ok(!isLoopbackBase("http://192.0.2.7:8765"));
});

const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

test("requests carry the bearer token and JSON body", async () => {
  let seen;
  const api = new ApiClient("127.0.0.1:8765", "tok", async (url, init) => {
    seen = { url, init };
    return json(200, { ok: 1 });
  });
  assert.deepEqual(await api.updateSite("tumblr", { enabled: true }), { ok: 1 });
  assert.equal(seen.url, "http://127.0.0.1:8765/v1/sites/tumblr");
  assert.equal(seen.init.method, "PUT");
  assert.equal(seen.init.headers.Authorization, "Bearer tok");
  assert.deepEqual(JSON.parse(seen.init.body), { enabled: true });
  await api.removeSite("a/b");
  assert.equal(seen.url, "http://127.0.0.1:8765/v1/sites/a%2Fb", "ids are escaped into the path");
});

test("failures become typed errors a user can act on", async () => {
  const down = new ApiClient("127.0.0.1:1", null, async () => {
    throw new TypeError("Failed to fetch");
  });
  await assert.rejects(down.status(), (e) => e instanceof ApiError && e.kind === "network" && /cannot reach Sfumato at http:\/\/127.0.0.1:1/.test(e.message));

  const revoked = new ApiClient("127.0.0.1", "old", async () => json(401, { error: "unauthorized", message: "a valid token is required", hint: "pair this client" }));
  await assert.rejects(revoked.sites(), (e) => e.kind === "http" && e.status === 401 && e.message === "Sfumato answered 401: a valid token is required (pair this client)");

  const html = new ApiClient("127.0.0.1", "t", async () => new Response("<html>", { status: 200 }));
  await assert.rejects(html.status(), (e) => e.kind === "bad-response");

  const noContent = new ApiClient("127.0.0.1", "t", async () => new Response(null, { status: 204 }));
  assert.equal(await noContent.removeSite("x"), null);
});

test("a backend that never answers times out as unreachable", async () => {
  const hang = new ApiClient("127.0.0.1", "t", (url, init) => new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")))));
  const started = Date.now();
  await assert.rejects(hang.request("GET", "/v1/status", { timeout: 100 }), (e) => e.kind === "network" && /no answer within 0.1 s/.test(e.message));
  assert.ok(Date.now() - started < 2000);
});

test("protect sends the image and returns the bytes and X-Sfumato-* metrics", async () => {
  let seen;
  const api = new ApiClient("127.0.0.1", "t", async (url, init) => {
    seen = { url, init };
    return new Response(new Uint8Array([1, 2, 3]), {
      status: 200,
      headers: { "Content-Type": "image/png", "X-Sfumato-PSNR": "41.20", "X-Sfumato-Model": "m", Other: "x" },
    });
  });
  const image = new Blob([new Uint8Array([9, 9])], { type: "image/png" });
  const out = await api.protect(image, "high");
  assert.equal(seen.url, "http://127.0.0.1:8765/v1/protect?strength=high");
  assert.equal(seen.init.headers["Content-Type"], "image/png");
  assert.deepEqual(out.metrics, { psnr: "41.20", model: "m" });
  assert.deepEqual([...new Uint8Array(await out.blob.arrayBuffer())], [1, 2, 3]);
});
