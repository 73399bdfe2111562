import assert from "node:assert/strict";
import { test } from "node:test";
import vm from "node:vm";
import { hostMatches } from "../../src/lib/hosts.js";
import { generatePac, pacProxyString } from "../../src/lib/pac.js";
import { chromiumProxyConfig, firefoxProxyInfo, routeForHost, routingProblem } from "../../src/lib/routing.js";
import { randomHost, randomPattern, rng } from "./random.js";

/** Evaluate a PAC script the way a browser does: a fresh context, call FindProxyForURL. */
function pacFunction(script) {
  const context = vm.createContext({});
  vm.runInContext(script, context, { timeout: 1000 });
  return (host) => context.FindProxyForURL(`https://${host}/`, host);
}

const PROXY = { host: "127.0.0.1", port: 8080 };

test("PAC routes enabled hosts to the proxy without a DIRECT fallback", () => {
  const find = pacFunction(generatePac({ proxy: PROXY, patterns: ["tumblr.com", "*.host.bsky.network"] }));
  assert.equal(find("www.tumblr.com"), "PROXY 127.0.0.1:8080");
  assert.equal(find("WWW.TUMBLR.COM."), "PROXY 127.0.0.1:8080");
  assert.equal(find("pds.host.bsky.network"), "PROXY 127.0.0.1:8080");
  assert.equal(find("example.org"), "DIRECT");
  assert.equal(find("127.0.0.1"), "DIRECT");
});

test("PAC with no patterns sends everything direct", () => {
  const find = pacFunction(generatePac({ proxy: PROXY, patterns: [] }));
  assert.equal(find("www.tumblr.com"), "DIRECT");
});

test("PAC decisions equal the extension's own host matching (random hosts and patterns)", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const r = rng(seed);
    const patterns = Array.from({ length: 1 + r.int(6) }, () => randomPattern(r));
    const find = pacFunction(generatePac({ proxy: PROXY, patterns }));
    for (let i = 0; i < 80; i++) {
      const host = randomHost(r);
      const expected = hostMatches(host, patterns) ? "PROXY 127.0.0.1:8080" : "DIRECT";
      assert.equal(find(host), expected, `seed ${seed}: ${host} vs ${JSON.stringify(patterns)}`);
      assert.equal(routeForHost({ proxy: PROXY, patterns }, host).type === "proxy", expected !== "DIRECT");
    }
  }
});

test("host data cannot inject code into the PAC script", () => {
  const script = generatePac({ proxy: PROXY, patterns: ['a.com"];FindProxyForURL=function(){return "X"};//', "b.com"] });
  const find = pacFunction(script);
  assert.equal(find("b.com"), "PROXY 127.0.0.1:8080");
  assert.equal(find("zzz.org"), "DIRECT");
});

test("IPv6 proxy addresses are bracketed", () => {
  assert.equal(pacProxyString({ host: "::1", port: 8080 }), "PROXY [::1]:8080");
});

test("Chromium gets a mandatory PAC, or gives control back when nothing is routed", () => {
  const config = chromiumProxyConfig({ proxy: PROXY, patterns: ["pixiv.net"] });
  assert.equal(config.mode, "pac_script");
  assert.equal(config.pacScript.mandatory, true);
  assert.equal(pacFunction(config.pacScript.data)("www.pixiv.net"), "PROXY 127.0.0.1:8080");
  assert.equal(chromiumProxyConfig({ proxy: PROXY, patterns: [] }), null);
});

test("Firefox gets the proxy with no failover for routed hosts, direct otherwise", () => {
  const table = { proxy: PROXY, patterns: ["pixiv.net"] };
  assert.deepEqual(firefoxProxyInfo(table, "https://www.pixiv.net/ajax/x"), [{ type: "http", host: "127.0.0.1", port: 8080 }, null]);
  assert.deepEqual(firefoxProxyInfo(table, "https://example.org/"), { type: "direct" });
  assert.deepEqual(firefoxProxyInfo(table, "garbage"), { type: "direct" });
});

test("levelOfControl: only a wanted setting that someone else overrides is a problem", () => {
  assert.equal(routingProblem("controlled_by_this_extension", true), "");
  assert.equal(routingProblem("controllable_by_this_extension", true), "");
  assert.equal(routingProblem("controlled_by_other_extensions", true), "other-extension");
  assert.equal(routingProblem("not_controllable", true), "policy");
  assert.equal(routingProblem("controlled_by_other_extensions", false), "");
});
