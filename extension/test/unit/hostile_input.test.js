// Whatever the backend (or a man in the middle of a misconfigured address) answers, the
// normalisers return well-formed values and never throw: random JSON-ish values, seeded.
import assert from "node:assert/strict";
import { test } from "node:test";
import { compilePattern, hostMatches, normalizeHost } from "../../src/lib/hosts.js";
import { generatePac } from "../../src/lib/pac.js";
import { normalizeActivity, normalizeSites, normalizeStatus, proxyFromStatus } from "../../src/lib/state.js";
import { rng } from "./random.js";

function randomValue(r, depth = 0) {
  const kind = r.int(depth > 3 ? 6 : 9);
  switch (kind) {
    case 0: return null;
    case 1: return r.int(2) === 0;
    case 2: return r.pick([0, -1, 1.5, 1e15, Number.MAX_SAFE_INTEGER, 65536, 8080]);
    case 3: return r.pick(["", "x", "tumblr.com", "*.a.b", "127.0.0.1:8080", "[::1]:1", "refused", "protected", "high", "2023-01-01T00:00:00Z", "a:b:c", "<script>", "\u0000"]);
    case 4: return undefined;
    case 5: return "s" + r.int(1000);
    case 6: return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
    default: {
      const keys = ["id", "name", "hosts", "upload_hosts", "enabled", "strength", "builtin", "sites", "events", "time", "site", "outcome", "reason", "proxy", "address", "host", "port", "ca", "fingerprint", "trusted", "model", "defaults", "version", "size"];
      const obj = {};
      for (let i = r.int(6); i > 0; i--) obj[r.pick(keys)] = randomValue(r, depth + 1);
      return obj;
    }
  }
}

test("normalisers accept any JSON-ish value without throwing and return the documented shapes", () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const r = rng(seed);
    const value = randomValue(r);
    const sites = normalizeSites(value);
    assert.ok(Array.isArray(sites));
    for (const s of sites) {
      assert.equal(typeof s.id, "string");
      assert.ok(Array.isArray(s.hosts) && s.hosts.every((h) => typeof h === "string"));
      assert.equal(typeof s.enabled, "boolean");
      assert.equal(typeof s.strength, "string");
    }
    const events = normalizeActivity(value);
    assert.ok(Array.isArray(events));
    for (const e of events) assert.ok(Number.isFinite(e.time) && typeof e.id === "string" && typeof e.reason === "string");
    const status = normalizeStatus(value);
    assert.ok(status === null || typeof status.caFingerprint === "string");
    const proxy = proxyFromStatus(value);
    assert.ok(proxy === null || (typeof proxy.host === "string" && proxy.port > 0 && proxy.port < 65536));
  }
});

test("host helpers and PAC generation never throw on junk patterns", () => {
  const r = rng(99);
  const junk = ["", "*", "**", ".", "..", "*.", "a..b", "[", "]", "::", "a b", "ä.com", "x".repeat(300), "*.*.*", "-", "a/b", "%"];
  for (let i = 0; i < 500; i++) {
    const patterns = Array.from({ length: 1 + r.int(4) }, () => r.pick(junk) + (r.int(2) ? r.pick(junk) : ""));
    for (const p of patterns) compilePattern(p);
    hostMatches(r.pick(junk), patterns);
    normalizeHost(r.pick(junk));
    const script = generatePac({ proxy: { host: "127.0.0.1", port: 8080 }, patterns });
    assert.ok(script.includes("function FindProxyForURL"));
  }
});
