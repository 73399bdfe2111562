// Pure state logic of the extension: what the service worker stores, how backend answers are
// normalised, how the connection state moves, what gets routed, what the badge says and which
// activity events deserve a notification. No browser API here, so node's test runner covers it.

import { hostOfUrl, siteForHost, siteHosts } from "./hosts.js";

export const STRENGTHS = ["low", "default", "high"];
export const FAIL_MODES = ["block", "direct"];
export const DEFAULT_API_BASE = "http://127.0.0.1:8765";
export const DEFAULT_PROXY = { host: "127.0.0.1", port: 8080 };
/** How long a refused upload keeps the "problem" badge on its site's tabs. */
export const REFUSAL_BADGE_MS = 5 * 60 * 1000;
/** Polling while a tab shows an enabled site (uploads can happen) vs otherwise. */
export const FAST_POLL_MS = 3000;
export const SLOW_POLL_MINUTES = 1;

/** Connection states: why the extension can or cannot talk to `sfumato serve`. */
export const Connection = Object.freeze({
  UNPAIRED: "unpaired", // no token yet: pair in the options page
  CONNECTED: "connected",
  UNREACHABLE: "unreachable", // network error or timeout: is `sfumato serve` running?
  UNAUTHORIZED: "unauthorized", // 401: the token was revoked, pair again
  ERROR: "error", // the backend answered something unexpected
});

/** Everything the service worker keeps in storage, with its defaults. */
export function defaultState() {
  return {
    apiBase: DEFAULT_API_BASE,
    token: null,
    connection: { state: Connection.UNPAIRED, detail: "", since: 0 },
    status: null,
    sites: [],
    failMode: "block",
    activity: [],
    activityCursor: null,
    refusedAt: {},
  };
}

/**
 * Next connection state after an event: {type: "ok"} | {type: "network", detail} |
 * {type: "http", status, detail} | {type: "paired"} | {type: "unpaired"}.
 * `since` only moves when the state changes, so the UI can say "unreachable for 3 min".
 */
export function nextConnection(prev, event, now) {
  let state;
  let detail = "";
  switch (event.type) {
    case "ok":
    case "paired":
      state = Connection.CONNECTED;
      break;
    case "unpaired":
      state = Connection.UNPAIRED;
      break;
    case "network":
      state = Connection.UNREACHABLE;
      detail = event.detail || "";
      break;
    case "http":
      state = event.status === 401 ? Connection.UNAUTHORIZED : Connection.ERROR;
      detail = event.detail || `HTTP ${event.status}`;
      break;
    default:
      throw new TypeError(`unknown connection event ${JSON.stringify(event && event.type)}`);
  }
  if (prev && prev.state === state) return { ...prev, detail };
  return { state, detail, since: now };
}

function asStrength(value, fallback) {
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "string" && (STRENGTHS.includes(value) || Number.isFinite(Number.parseFloat(value)))) return value;
  return fallback;
}

/**
 * Sites from `GET /v1/sites` ({"sites": [...], "defaults": {...}} or a bare list) in one shape;
 * junk entries dropped. A site without its own strength shows the backend's default strength.
 */
export function normalizeSites(payload) {
  const list = Array.isArray(payload) ? payload : payload && Array.isArray(payload.sites) ? payload.sites : [];
  const fallback = asStrength(payload && payload.defaults && payload.defaults.strength, "default");
  return list
    .filter((s) => s && typeof s.id === "string" && s.id)
    .map((s) => ({
      id: s.id,
      name: typeof s.name === "string" && s.name ? s.name : s.id,
      hosts: siteHosts(s),
      enabled: Boolean(s.enabled),
      strength: asStrength(s.strength, fallback),
      custom: Boolean(s.custom ?? s.builtin === false),
    }));
}

function parseHostPort(text) {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(String(text || "").replace(/^[a-z]+:\/\//, ""));
  return m ? { host: m[1], port: Number(m[2]) } : null;
}

/**
 * The proxy address from `GET /v1/status`. Accepts {"proxy": {"host","port"}}, {"proxy":
 * {"address": "h:p"}}, {"proxy": "h:p"} or {"proxy_address": "h:p"}; a wildcard listen address
 * means "this machine" for a browser on the same host.
 */
export function proxyFromStatus(status) {
  if (!status || typeof status !== "object") return null;
  const p = status.proxy;
  let found = null;
  if (p && typeof p === "object" && p.host && p.port) found = { host: String(p.host), port: Number(p.port) };
  else if (p && typeof p === "object" && p.address) found = parseHostPort(p.address);
  else if (typeof p === "string") found = parseHostPort(p);
  else if (typeof status.proxy_address === "string") found = parseHostPort(status.proxy_address);
  if (!found || !Number.isInteger(found.port) || found.port <= 0 || found.port > 65535) return null;
  if (found.host === "0.0.0.0" || found.host === "::") found.host = "127.0.0.1";
  return found;
}

/** The parts of `/v1/status` the UI shows. */
export function normalizeStatus(status) {
  if (!status || typeof status !== "object") return null;
  const ca = status.ca && typeof status.ca === "object" ? status.ca : {};
  const model = status.model && typeof status.model === "object" ? status.model : {};
  const proxy = status.proxy && typeof status.proxy === "object" ? status.proxy : {};
  return {
    version: typeof status.version === "string" ? status.version : "",
    modelId: typeof model.id === "string" ? model.id : typeof status.model === "string" ? status.model : "",
    proxy: proxyFromStatus(status),
    proxyState: typeof proxy.state === "string" ? proxy.state : proxy.running === false ? "stopped" : "running",
    caFingerprint: String(ca.fingerprint || ca.sha256 || status.ca_fingerprint || ""),
    caTrusted: typeof ca.trusted === "boolean" ? ca.trusted : null,
    defaultStrength: asStrength(status.defaults && status.defaults.strength, "default"),
  };
}

function eventTime(value) {
  if (typeof value === "number" && Number.isFinite(value)) return value < 1e12 ? value * 1000 : value;
  const t = Date.parse(value);
  return Number.isFinite(t) ? t : 0;
}

/** Activity events from `GET /v1/activity` (a list or {"events"|"activity"|"items": [...]}), newest first. */
export function normalizeActivity(payload) {
  const list = Array.isArray(payload)
    ? payload
    : (payload && (payload.events || payload.activity || payload.items)) || [];
  if (!Array.isArray(list)) return [];
  return list
    .filter((e) => e && typeof e === "object")
    .map((e) => {
      const time = eventTime(e.time ?? e.ts ?? e.timestamp);
      const site = String(e.site ?? e.site_id ?? "");
      const outcome = String(e.outcome ?? e.result ?? "");
      const id = e.id != null ? String(e.id) : `${time}|${site}|${outcome}|${e.size ?? ""}`;
      return {
        id,
        time,
        site,
        outcome,
        reason: String(e.reason ?? e.message ?? e.detail ?? ""),
        code: String(e.code ?? ""),
        hint: String(e.hint ?? ""),
        kind: String(e.kind ?? e.request_kind ?? ""),
        size: Number.isFinite(e.size) ? e.size : Number.isFinite(e.image_size) ? e.image_size : null,
      };
    })
    .sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : -1));
}

/**
 * Events newer than the cursor that are refusals (they deserve a notification), and the new
 * cursor {time, ids} (ids of the events at the newest time, since several can share a second).
 * The first poll (cursor null) only sets the cursor: old refusals are not news.
 */
export function newRefusals(events, cursor) {
  if (!events.length) return { refusals: [], cursor };
  const newestTime = Math.max(...events.map((e) => e.time));
  const idsAt = (t) => events.filter((e) => e.time === t).map((e) => e.id);
  if (!cursor) return { refusals: [], cursor: { time: newestTime, ids: idsAt(newestTime) } };
  const seen = new Set(cursor.ids || []);
  const fresh = events.filter((e) => e.time > cursor.time || (e.time === cursor.time && !seen.has(e.id)));
  if (!fresh.length) return { refusals: [], cursor };
  const ids = newestTime === cursor.time ? [...seen, ...idsAt(newestTime)] : idsAt(newestTime);
  return {
    refusals: fresh.filter((e) => e.outcome === "refused"),
    cursor: { time: newestTime, ids: [...new Set(ids)] },
  };
}

/**
 * The routing table both browsers apply. Enabled sites' hosts go to the proxy. When the backend
 * cannot be reached, fail mode "block" keeps routing them to the proxy (so uploads fail rather
 * than leave unprotected) and "direct" sends everything direct (the user's explicit choice).
 */
export function buildRoutingTable(state) {
  const enabled = state.sites.filter((s) => s.enabled);
  const proxy = (state.status && state.status.proxy) || DEFAULT_PROXY;
  const patterns = [...new Set(enabled.flatMap((s) => s.hosts))].sort();
  const connected = state.connection.state === Connection.CONNECTED;
  if (!state.token || !patterns.length) return { proxy, patterns: [], mode: "off" };
  if (!connected && state.failMode === "direct") return { proxy, patterns: [], mode: "direct-unprotected" };
  return { proxy, patterns, mode: connected ? "protect" : "block" };
}

/** The site of a tab URL, with its current settings, or null. */
export function siteForUrl(url, sites) {
  return siteForHost(hostOfUrl(url), sites);
}

/**
 * The badge of a tab: "" (not an art site), "on", "off" or "problem" (enabled but the backend is
 * not connected, or an upload on this site was refused lately).
 */
export function badgeFor(url, state, now) {
  const site = siteForUrl(url, state.sites);
  if (!site) return { kind: "none" };
  if (!site.enabled) return { kind: "off", site };
  if (state.routingProblem) return { kind: "problem", site, why: "routing" };
  if (state.connection.state !== Connection.CONNECTED) return { kind: "problem", site, why: "backend" };
  const refused = state.refusedAt[site.id];
  if (refused && now - refused < REFUSAL_BADGE_MS) return { kind: "problem", site, why: "refused" };
  return { kind: "on", site };
}

/** Whether any open tab shows an enabled site: then refusals are polled every few seconds. */
export function needsFastPoll(tabUrls, state) {
  if (!state.token) return false;
  return tabUrls.some((url) => {
    const site = siteForUrl(url, state.sites);
    return Boolean(site && site.enabled);
  });
}

/** Recent activity of one site for the popup (newest first). */
export function activityForSite(events, siteId, limit = 5) {
  return events.filter((e) => e.site === siteId).slice(0, limit);
}

/** A custom site id from a host ("www.my-art.example" -> "custom-my-art-example"), ≤ 40 chars. */
export function customSiteId(host) {
  const slug = host
    .replace(/^www\./, "")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return ("custom-" + slug).slice(0, 40).replace(/-+$/, "");
}
