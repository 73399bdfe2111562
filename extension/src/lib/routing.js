// Applies the routing table to the browser: Chromium gets a generated PAC script through
// chrome.proxy.settings; Firefox (which has proxy.onRequest) decides per request from the same
// table. Feature detection, not user-agent sniffing.

import { hostMatches, normalizeHost } from "./hosts.js";
import { generatePac } from "./pac.js";

/** What one request to `host` should do under `table`: {type: "proxy", host, port} | {type: "direct"}. */
export function routeForHost(table, host) {
  const h = normalizeHost(host);
  if (table && table.patterns.length && hostMatches(h, table.patterns)) {
    return { type: "proxy", host: table.proxy.host, port: table.proxy.port };
  }
  return { type: "direct" };
}

/** Firefox's answer for proxy.onRequest. */
export function firefoxProxyInfo(table, url) {
  let host = "";
  try {
    host = new URL(url).hostname;
  } catch {
    return { type: "direct" };
  }
  const route = routeForHost(table, host);
  // The trailing null stops Firefox failing over to the browser's own proxy or direct: a dead
  // Sfumato proxy fails the request instead of letting the upload leave unprotected.
  return route.type === "proxy" ? [{ type: "http", host: route.host, port: route.port }, null] : { type: "direct" };
}

/** Chromium's proxy setting for a table, or null to give proxy control back to the system. */
export function chromiumProxyConfig(table) {
  if (!table.patterns.length) return null;
  return { mode: "pac_script", pacScript: { data: generatePac(table), mandatory: true } };
}

/** What stops our proxy setting from applying, from chrome.proxy's levelOfControl ("" = nothing). */
export function routingProblem(levelOfControl, wanted) {
  if (!wanted) return "";
  if (levelOfControl === "controlled_by_other_extensions") return "other-extension";
  if (levelOfControl === "not_controllable") return "policy";
  return "";
}

/** The browser routing of one extension instance. */
export class Router {
  constructor(api) {
    this.api = api;
    this.table = { proxy: null, patterns: [], mode: "off" };
    this.firefox = Boolean(api.proxy && api.proxy.onRequest);
    /** "" when our routing is in force; "other-extension" or "policy" when something overrides it. */
    this.problem = "";
  }

  /** Firefox only: must run synchronously at service-worker start so no request is missed. */
  listen(ready) {
    if (!this.firefox) return;
    this.api.proxy.onRequest.addListener(
      async (details) => {
        await ready;
        return firefoxProxyInfo(this.table, details.url);
      },
      { urls: ["<all_urls>"] },
    );
  }

  async apply(table) {
    this.table = table;
    if (this.firefox) return;
    const value = chromiumProxyConfig(table);
    if (value) await this.api.proxy.settings.set({ value, scope: "regular" });
    else await this.api.proxy.settings.clear({ scope: "regular" });
    // Another proxy extension (or an enterprise policy) wins over ours without an error: find out,
    // so the popup can say protected sites are not going through Sfumato.
    const { levelOfControl } = await this.api.proxy.settings.get({});
    this.problem = routingProblem(levelOfControl, Boolean(value));
  }
}
