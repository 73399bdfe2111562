// An in-memory stand-in for the chrome.* APIs the service worker uses, recording what it did,
// and a fake `sfumato serve` control API for fetch. Unit tests only: the end-to-end test drives
// the real browser and the real backend.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function event() {
  const listeners = [];
  return { addListener: (fn) => listeners.push(fn), listeners };
}

export function fakeChrome({ tabs = [], firefox = false, levelOfControl = "controlled_by_this_extension", lang = "en" } = {}) {
  const store = {};
  const messages = JSON.parse(readMessages(lang));
  const ext = {
    calls: { proxy: [], notifications: [], badges: {} },
    storage: {
      local: {
        get: async () => structuredClone(store),
        set: async (changes) => Object.assign(store, structuredClone(changes)),
      },
    },
    i18n: {
      getMessage: (key, subs = []) => {
        const m = messages[key];
        if (!m) return "";
        return [].concat(subs).reduce((text, s, i) => text.replaceAll(`$${i + 1}`, s), m.message);
      },
    },
    runtime: { onMessage: event(), getURL: (p) => `chrome-extension://test/${p}` },
    alarms: { onAlarm: event(), create: () => {} },
    tabs: {
      onUpdated: event(),
      onActivated: event(),
      onRemoved: event(),
      query: async () => tabs,
      get: async (id) => tabs.find((t) => t.id === id),
    },
    action: {
      setBadgeText: async ({ tabId, text }) => {
        ext.calls.badges[tabId] = { ...ext.calls.badges[tabId], text };
      },
      setBadgeBackgroundColor: async () => {},
      setTitle: async ({ tabId, title }) => {
        ext.calls.badges[tabId] = { ...ext.calls.badges[tabId], title };
      },
    },
    notifications: { create: async (id, options) => ext.calls.notifications.push({ id, ...options }) },
    proxy: firefox
      ? { onRequest: event() }
      : {
          settings: {
            set: async ({ value }) => ext.calls.proxy.push(value),
            clear: async () => ext.calls.proxy.push(null),
            get: async () => ({ levelOfControl: ext.levelOfControl, value: ext.calls.proxy.at(-1) || { mode: "system" } }),
          },
        },
    store,
    levelOfControl,
  };
  return ext;
}

function readMessages(lang) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return readFileSync(path.join(here, "..", "..", "src", "_locales", lang, "messages.json"), "utf8");
}

/** A fake control API: sites, activity, pairing, and switches to make it fail. */
export function fakeBackend() {
  const backend = {
    up: true,
    token: "tok-123",
    code: "424242",
    status: { version: "0.1.0", model: { id: "tiny" }, proxy: { address: "127.0.0.1:18080", state: "running" }, ca: { fingerprint: "AA:BB" }, defaults: { strength: "default" } },
    sites: [
      { id: "tumblr", name: "Tumblr", hosts: ["www.tumblr.com", "tumblr.com"], enabled: false, strength: "default" },
      { id: "bluesky", name: "Bluesky", hosts: ["bsky.app"], upload_hosts: ["*.host.bsky.network"], enabled: false, strength: "default" },
    ],
    events: [],
    requests: [],
  };
  backend.fetch = async (url, init = {}) => {
    const u = new URL(url);
    const method = init.method || "GET";
    backend.requests.push(`${method} ${u.pathname}`);
    if (!backend.up) throw new TypeError("Failed to fetch");
    const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
    if (u.pathname === "/v1/pair") {
      const body = JSON.parse(init.body);
      return body.code === backend.code ? json(200, { token: backend.token }) : json(403, { error: "wrong code" });
    }
    if ((init.headers || {}).Authorization !== `Bearer ${backend.token}`) return json(401, { error: "unauthorized" });
    if (u.pathname === "/v1/status") return json(200, backend.status);
    if (u.pathname === "/v1/sites" && method === "GET") return json(200, { sites: backend.sites, defaults: backend.status.defaults });
    if (u.pathname === "/v1/sites" && method === "POST") {
      const site = JSON.parse(init.body);
      const unknown = Object.keys(site).filter((k) => !["id", "name", "hosts", "enabled"].includes(k));
      if (unknown.length) return json(400, { error: "unknown_field", message: `unknown field(s): ${unknown}` });
      backend.sites.push({ ...site, builtin: false, strength: null });
      return json(201, site);
    }
    const m = /^\/v1\/sites\/([^/]+)$/.exec(u.pathname);
    if (m && method === "PUT") {
      const site = backend.sites.find((s) => s.id === decodeURIComponent(m[1]));
      if (!site) return json(404, { error: "no such site" });
      Object.assign(site, JSON.parse(init.body));
      return json(200, site);
    }
    if (u.pathname === "/v1/settings" && method === "PUT") {
      Object.assign(backend.status.defaults, JSON.parse(init.body));
      return json(200, backend.status.defaults);
    }
    if (u.pathname === "/v1/activity") {
      const site = u.searchParams.get("site");
      const limit = Number(u.searchParams.get("limit") || 50);
      return json(200, { events: backend.events.filter((e) => !site || e.site === site).slice(0, limit) });
    }
    return json(404, { error: "not found" });
  };
  return backend;
}
