import assert from "node:assert/strict";
import { test } from "node:test";
import vm from "node:vm";
import { Service } from "../../src/lib/service.js";
import { fakeBackend, fakeChrome } from "./fake_browser.js";

const TUMBLR_TAB = { id: 7, url: "https://www.tumblr.com/new/photo" };

function pacRoute(config, host) {
  const context = vm.createContext({});
  vm.runInContext(config.pacScript.data, context);
  return context.FindProxyForURL(`https://${host}/`, host);
}

async function pairedService({ tabs = [TUMBLR_TAB], firefox = false, levelOfControl, lang } = {}) {
  const ext = fakeChrome({ tabs, firefox, levelOfControl, lang });
  const backend = fakeBackend();
  let now = 1_700_000_000_000;
  const service = new Service(ext, { fetch: backend.fetch, now: () => now });
  await service.ready;
  const answer = await service.route({ type: "pair", apiBase: "127.0.0.1:8765", code: backend.code });
  assert.equal(answer.ok, true, answer.error);
  return { ext, backend, service, tick: (ms) => (now += ms) };
}

test("pairing stores the token and the sites, nothing is routed until a site is enabled", async (t) => {
  const { ext, service } = await pairedService();
  t.after(() => clearTimeout(service.fastTimer));
  assert.equal(ext.store.token, "tok-123");
  assert.equal(ext.store.apiBase, "http://127.0.0.1:8765");
  assert.equal(service.state.connection.state, "connected");
  assert.equal(service.state.sites.length, 2);
  assert.equal(ext.calls.proxy.at(-1), null, "proxy control is given back to the system");
  assert.equal(ext.calls.badges[7].text, "off");
});

test("a wrong pairing code is an error answer and stores nothing", async () => {
  const ext = fakeChrome();
  const backend = fakeBackend();
  const service = new Service(ext, { fetch: backend.fetch });
  await service.ready;
  const answer = await service.route({ type: "pair", apiBase: "127.0.0.1:8765", code: "000000" });
  assert.equal(answer.ok, false);
  assert.match(answer.error, /403/);
  assert.equal(ext.store.token, undefined);
});

test("toggling a site routes its hosts (and upload hosts) at once, and back", async (t) => {
  const { ext, backend, service } = await pairedService();
  t.after(() => clearTimeout(service.fastTimer));
  let answer = await service.route({ type: "setSite", siteId: "bluesky", enabled: true, tabId: 7 });
  assert.equal(answer.ok, true, answer.error);
  assert.equal(backend.sites[1].enabled, true, "the backend was told");
  const config = ext.calls.proxy.at(-1);
  assert.equal(pacRoute(config, "pds1.host.bsky.network"), "PROXY 127.0.0.1:18080");
  assert.equal(pacRoute(config, "bsky.app"), "PROXY 127.0.0.1:18080");
  assert.equal(pacRoute(config, "www.tumblr.com"), "DIRECT");

  answer = await service.route({ type: "setSite", siteId: "tumblr", enabled: true, strength: "high", tabId: 7 });
  assert.equal(answer.value.site.id, "tumblr");
  assert.equal(answer.value.site.strength, "high");
  assert.equal(answer.value.badge, "on");
  assert.equal(pacRoute(ext.calls.proxy.at(-1), "www.tumblr.com"), "PROXY 127.0.0.1:18080");
  assert.equal(ext.calls.badges[7].text, "on");

  await service.route({ type: "setSite", siteId: "tumblr", enabled: false });
  await service.route({ type: "setSite", siteId: "bluesky", enabled: false });
  assert.equal(ext.calls.proxy.at(-1), null);
  assert.equal((await service.route({ type: "setSite", siteId: "tumblr", strength: "max" })).ok, false);
});

test("backend down: enabled sites stay routed to the proxy (blocked) unless the user chose direct", async (t) => {
  const { ext, backend, service } = await pairedService();
  t.after(() => clearTimeout(service.fastTimer));
  await service.route({ type: "setSite", siteId: "tumblr", enabled: true });
  backend.up = false;
  await service.refresh();
  assert.equal(service.state.connection.state, "unreachable");
  assert.equal(pacRoute(ext.calls.proxy.at(-1), "www.tumblr.com"), "PROXY 127.0.0.1:18080");
  assert.equal(ext.calls.badges[7].text, "!");
  const view = (await service.route({ type: "getState", tabId: 7 })).value;
  assert.equal(view.routing, "block");

  await service.route({ type: "setOptions", failMode: "direct" });
  assert.equal(ext.calls.proxy.at(-1), null, "direct-unprotected routes nothing");
  assert.equal((await service.route({ type: "getState" })).value.routing, "direct-unprotected");

  backend.up = true;
  await service.refresh();
  assert.equal(service.state.connection.state, "connected");
  assert.equal(pacRoute(ext.calls.proxy.at(-1), "www.tumblr.com"), "PROXY 127.0.0.1:18080");
  assert.equal((await service.route({ type: "setOptions", failMode: "sideways" })).ok, false);
});

test("a new refused upload raises one notification with the reason and marks the site", async (t) => {
  const { ext, backend, service, tick } = await pairedService();
  t.after(() => clearTimeout(service.fastTimer));
  await service.route({ type: "setSite", siteId: "tumblr", enabled: true });
  backend.events.unshift({ id: 1, time: 1_700_000_000, site: "tumblr", outcome: "protected" });
  await service.refresh();
  assert.equal(ext.calls.notifications.length, 0);
  tick(1000);
  backend.events.unshift({ id: 2, time: 1_700_000_100, site: "tumblr", outcome: "refused", reason: "the image is corrupt" });
  await service.refresh();
  await service.refresh();
  assert.equal(ext.calls.notifications.length, 1);
  const n = ext.calls.notifications[0];
  assert.equal(n.title, "Upload to Tumblr refused");
  assert.match(n.message, /the image is corrupt/);
  assert.match(n.message, /sfumato protect/);
  assert.equal(ext.calls.badges[7].text, "!");
  const view = (await service.route({ type: "getState", tabId: 7 })).value;
  assert.deepEqual(view.activity.map((e) => e.outcome), ["refused", "protected"]);
});

test("a refusal is worded by its code in the user's language; unknown codes keep the backend's words", async (t) => {
  const { ext, backend, service, tick } = await pairedService({ lang: "es" });
  t.after(() => clearTimeout(service.fastTimer));
  await service.route({ type: "setSite", siteId: "tumblr", enabled: true });
  backend.events.unshift({ id: 1, time: 1_700_000_000, site: "tumblr", outcome: "protected" });
  await service.refresh(); // the first poll only sets the cursor
  tick(1000);
  const english = "the PNG file's header is damaged or incomplete (the file is truncated or damaged)";
  backend.events.unshift({ id: 3, time: 1_700_000_200, site: "tumblr", outcome: "refused", reason: english, code: "corrupt-image" });
  await service.refresh();
  tick(1000);
  backend.events.unshift({ id: 4, time: 1_700_000_300, site: "tumblr", outcome: "refused", reason: "a brand new problem", code: "brand-new" });
  await service.refresh();
  const [known, unknown] = ext.calls.notifications;
  assert.equal(known.title, "Subida a Tumblr rechazada");
  assert.match(known.message, /^La imagen está dañada o incompleta/);
  assert.ok(!known.message.includes(english), "no English backend text in the Spanish notification");
  assert.match(unknown.message, /^a brand new problem\nNo se envió nada/);
  const view = (await service.route({ type: "getState", tabId: 7 })).value;
  assert.deepEqual(view.activity.slice(0, 2).map((e) => e.code), ["brand-new", "corrupt-image"]);
});

test("a revoked token shows as unauthorized; unpairing clears routing", async (t) => {
  const { ext, backend, service } = await pairedService();
  t.after(() => clearTimeout(service.fastTimer));
  await service.route({ type: "setSite", siteId: "tumblr", enabled: true });
  backend.token = "rotated";
  await service.refresh();
  assert.equal(service.state.connection.state, "unauthorized");
  await service.route({ type: "unpair" });
  assert.equal(ext.store.token, null);
  assert.equal(ext.calls.proxy.at(-1), null);
  assert.equal(ext.calls.badges[7].text, "");
});

test("'Protect this site' adds an enabled custom site for the tab's host", async (t) => {
  const { backend, service } = await pairedService({ tabs: [{ id: 9, url: "https://www.my-art.example/upload" }] });
  t.after(() => clearTimeout(service.fastTimer));
  const before = (await service.route({ type: "getState", tabId: 9 })).value;
  assert.equal(before.canAddSite, true);
  const answer = await service.route({ type: "addSite", tabId: 9 });
  assert.equal(answer.ok, true, answer.error);
  assert.deepEqual(backend.sites.at(-1).hosts, ["my-art.example", "*.my-art.example"]);
  assert.equal(answer.value.site.id, "custom-my-art-example");
  assert.equal(answer.value.site.enabled, true);
  assert.equal((await service.route({ type: "addSite", url: "chrome://extensions" })).ok, false);
  const high = await service.route({ type: "setOptions", defaultStrength: "high", tabId: 9 });
  assert.equal(high.value.defaultStrength, "high");
  assert.equal(high.value.site.strength, "high", "the custom site follows the backend default");
});

test("Firefox: proxy.onRequest answers from the same table", async (t) => {
  const { ext, service } = await pairedService({ firefox: true });
  t.after(() => clearTimeout(service.fastTimer));
  service.start();
  await service.route({ type: "setSite", siteId: "tumblr", enabled: true });
  const [listener] = ext.proxy.onRequest.listeners;
  assert.deepEqual(await listener({ url: "https://www.tumblr.com/api/v2/media/image" }), [{ type: "http", host: "127.0.0.1", port: 18080 }, null]);
  assert.deepEqual(await listener({ url: "https://example.org/" }), { type: "direct" });
});

test("another extension controlling the proxy is a visible problem, not silent non-protection", async (t) => {
  const { ext, service } = await pairedService({ levelOfControl: "controlled_by_other_extensions" });
  t.after(() => clearTimeout(service.fastTimer));
  const off = (await service.route({ type: "getState", tabId: 7 })).value;
  assert.equal(off.routingProblem, "", "nothing wanted, nothing to complain about");
  const on = (await service.route({ type: "setSite", siteId: "tumblr", enabled: true, tabId: 7 })).value;
  assert.equal(on.routingProblem, "other-extension");
  assert.equal(on.badge, "problem");
  assert.equal(on.problem, "routing");
  assert.equal(ext.calls.badges[7].text, "!");
  assert.match(ext.calls.badges[7].title, /overrides the routing/);
  assert.equal(ext.store.routingProblem, undefined, "derived, never stored");
});

test("the popup's refresh fetches its site's own history, beyond the shared last 50 events", async (t) => {
  const { backend, service } = await pairedService();
  t.after(() => clearTimeout(service.fastTimer));
  backend.events = [
    ...Array.from({ length: 60 }, (_, i) => ({ id: 100 + i, time: 1_700_000_500 - i, site: "bluesky", outcome: "protected" })),
    { id: 7, time: 1_700_000_000, site: "tumblr", outcome: "refused", reason: "signed upload" },
  ];
  await service.refresh();
  assert.deepEqual((await service.route({ type: "getState", tabId: 7 })).value.activity, [], "not among the last 50");
  const view = (await service.route({ type: "refresh", tabId: 7 })).value;
  assert.deepEqual(view.activity.map((e) => e.reason), ["signed upload"]);
  assert.ok(backend.requests.includes("GET /v1/activity"));
});
