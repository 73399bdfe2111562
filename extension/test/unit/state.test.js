import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Connection,
  REFUSAL_BADGE_MS,
  activityForSite,
  badgeFor,
  buildRoutingTable,
  customSiteId,
  defaultState,
  needsFastPoll,
  newRefusals,
  nextConnection,
  normalizeActivity,
  normalizeSites,
  normalizeStatus,
  proxyFromStatus,
} from "../../src/lib/state.js";

const SITES = normalizeSites({
  sites: [
    { id: "tumblr", name: "Tumblr", hosts: ["www.tumblr.com", "tumblr.com"], enabled: true, strength: "high" },
    { id: "pixiv", name: "Pixiv", hosts: ["pixiv.net"], enabled: false, strength: "default" },
    { id: "bluesky", name: "Bluesky", hosts: ["bsky.app"], upload_hosts: ["*.host.bsky.network"], enabled: true },
  ],
});

function state(overrides = {}) {
  return {
    ...defaultState(),
    token: "t",
    sites: SITES,
    connection: { state: Connection.CONNECTED, detail: "", since: 0 },
    status: { proxy: { host: "127.0.0.1", port: 9090 } },
    ...overrides,
  };
}

test("connection moves by event and keeps `since` while the state holds", () => {
  let c = nextConnection(null, { type: "paired" }, 10);
  assert.deepEqual(c, { state: "connected", detail: "", since: 10 });
  c = nextConnection(c, { type: "ok" }, 20);
  assert.equal(c.since, 10);
  c = nextConnection(c, { type: "network", detail: "refused" }, 30);
  assert.deepEqual(c, { state: "unreachable", detail: "refused", since: 30 });
  c = nextConnection(c, { type: "network", detail: "timeout" }, 40);
  assert.equal(c.since, 30);
  assert.equal(c.detail, "timeout");
  assert.equal(nextConnection(c, { type: "http", status: 401 }, 50).state, "unauthorized");
  assert.equal(nextConnection(c, { type: "http", status: 500 }, 50).state, "error");
  assert.equal(nextConnection(c, { type: "unpaired" }, 50).state, "unpaired");
  assert.throws(() => nextConnection(c, { type: "bogus" }, 60), TypeError);
});

test("sites are normalised from a list or an object; junk is dropped; hosts include upload hosts", () => {
  assert.equal(SITES.length, 3);
  assert.deepEqual(SITES[2].hosts, ["bsky.app", "*.host.bsky.network"]);
  assert.equal(SITES[2].strength, "default", "a missing strength is the default preset");
  const fromList = normalizeSites([{ id: "a", hosts: ["a.com"], strength: 1.3, builtin: false }, { name: "no id" }, null, "x"]);
  assert.deepEqual(fromList, [{ id: "a", name: "a", hosts: ["a.com"], enabled: false, strength: "1.3", custom: true }]);
  const inherited = normalizeSites({ sites: [{ id: "b", hosts: [], strength: null }], defaults: { strength: "high" } });
  assert.equal(inherited[0].strength, "high", "a site without its own strength shows the default");
  assert.deepEqual(normalizeSites(null), []);
  assert.deepEqual(normalizeSites({ sites: "nope" }), []);
});

test("the proxy address is read from the status in its plausible shapes", () => {
  assert.deepEqual(proxyFromStatus({ proxy: { host: "127.0.0.1", port: 8080 } }), { host: "127.0.0.1", port: 8080 });
  assert.deepEqual(proxyFromStatus({ proxy: { address: "127.0.0.1:8081" } }), { host: "127.0.0.1", port: 8081 });
  assert.deepEqual(proxyFromStatus({ proxy: "http://[::1]:8082" }), { host: "::1", port: 8082 });
  assert.deepEqual(proxyFromStatus({ proxy_address: "0.0.0.0:8083" }), { host: "127.0.0.1", port: 8083 });
  assert.equal(proxyFromStatus({ proxy: { host: "h", port: 70000 } }), null);
  assert.equal(proxyFromStatus({}), null);
  assert.equal(proxyFromStatus(null), null);
});

test("status normalisation keeps what the UI shows", () => {
  const s = normalizeStatus({ version: "0.1.0", model: { id: "m1" }, proxy: { host: "h", port: 1, state: "running" }, ca: { fingerprint: "AB:CD", trusted: false } });
  assert.deepEqual(s, {
    version: "0.1.0",
    modelId: "m1",
    proxy: { host: "h", port: 1 },
    proxyState: "running",
    caFingerprint: "AB:CD",
    caTrusted: false,
    defaultStrength: "default",
  });
  assert.equal(normalizeStatus("x"), null);
});

test("activity is normalised newest first with seconds or ISO times", () => {
  const events = normalizeActivity({
    events: [
      { id: 1, time: 1700000000, site: "tumblr", outcome: "protected", size: 10 },
      { id: 2, time: "2023-11-14T22:13:30Z", site: "tumblr", outcome: "refused", reason: "signed" },
      null,
    ],
  });
  assert.deepEqual(events.map((e) => e.id), ["2", "1"]);
  assert.equal(events[1].time, 1700000000000);
  assert.equal(events[0].reason, "signed");
  assert.deepEqual(normalizeActivity({ events: "x" }), []);
});

test("refusals: the first poll sets the cursor, later polls report only new refusals once", () => {
  const e = (id, time, outcome = "refused") => ({ id: String(id), time, site: "tumblr", outcome });
  let r = newRefusals([e(1, 100)], null);
  assert.deepEqual(r.refusals, []);
  r = newRefusals([e(3, 200), e(2, 150, "protected"), e(1, 100)], r.cursor);
  assert.deepEqual(r.refusals.map((x) => x.id), ["3"]);
  const again = newRefusals([e(3, 200), e(2, 150, "protected"), e(1, 100)], r.cursor);
  assert.deepEqual(again.refusals, []);
  const sameSecond = newRefusals([e(4, 200), e(3, 200)], r.cursor);
  assert.deepEqual(sameSecond.refusals.map((x) => x.id), ["4"], "a second event in the same second is new");
  assert.deepEqual(newRefusals([], r.cursor), { refusals: [], cursor: r.cursor });
});

test("routing: enabled sites go to the proxy; unreachable blocks by default or goes direct by choice", () => {
  const t = buildRoutingTable(state());
  assert.equal(t.mode, "protect");
  assert.deepEqual(t.proxy, { host: "127.0.0.1", port: 9090 });
  assert.ok(t.patterns.includes("*.host.bsky.network"));
  assert.ok(!t.patterns.includes("pixiv.net"), "disabled sites stay direct");

  const down = { state: Connection.UNREACHABLE, detail: "", since: 0 };
  const blocked = buildRoutingTable(state({ connection: down }));
  assert.equal(blocked.mode, "block");
  assert.deepEqual(blocked.patterns, t.patterns, "block keeps routing to the (dead) proxy");
  const direct = buildRoutingTable(state({ connection: down, failMode: "direct" }));
  assert.equal(direct.mode, "direct-unprotected");
  assert.deepEqual(direct.patterns, []);

  assert.equal(buildRoutingTable(state({ token: null })).mode, "off");
  assert.deepEqual(buildRoutingTable(state({ status: null })).proxy, { host: "127.0.0.1", port: 8080 });
});

test("badge: none / off / on / problem for backend or a recent refusal", () => {
  const now = 1_000_000;
  assert.equal(badgeFor("https://example.org/", state(), now).kind, "none");
  assert.equal(badgeFor("https://www.pixiv.net/", state(), now).kind, "off");
  assert.equal(badgeFor("https://www.tumblr.com/new", state(), now).kind, "on");
  const down = state({ connection: { state: Connection.UNREACHABLE } });
  assert.deepEqual(badgeFor("https://www.tumblr.com/", down, now).why, "backend");
  const refused = state({ refusedAt: { tumblr: now - 1000 } });
  assert.equal(badgeFor("https://www.tumblr.com/", refused, now).why, "refused");
  assert.equal(badgeFor("https://www.tumblr.com/", refused, now + REFUSAL_BADGE_MS).kind, "on");
});

test("fast polling only while a tab shows an enabled site and the extension is paired", () => {
  assert.ok(needsFastPoll(["https://example.org/", "https://www.tumblr.com/"], state()));
  assert.ok(!needsFastPoll(["https://www.pixiv.net/"], state()));
  assert.ok(!needsFastPoll(["https://www.tumblr.com/"], state({ token: null })));
});

test("activity for a site and custom site ids", () => {
  const events = [{ site: "a" }, { site: "b" }, { site: "a" }];
  assert.equal(activityForSite(events, "a").length, 2);
  assert.equal(activityForSite(events, "a", 1).length, 1);
  assert.equal(customSiteId("www.my-art.example"), "custom-my-art-example");
  const long = customSiteId("a-very-long-subdomain.of-an-artists-portfolio.example");
  assert.ok(long.length <= 40 && /^[a-z0-9_-]+$/.test(long) && !long.endsWith("-"), long);
});
