// Client of the control API of `sfumato serve` (docs/api.openapi.yaml). Every failure becomes an
// ApiError whose `kind` says what the user can do: "network" (start `sfumato serve`), "http"
// (status carries the code; 401 = pair again), "bad-response".

export class ApiError extends Error {
  /** @param {"network"|"http"|"bad-response"} kind */
  constructor(kind, message, status = 0, body = null) {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
    this.body = body;
  }
}

const TIMEOUT_MS = 8000;
const PROTECT_TIMEOUT_MS = 120000;

/** "127.0.0.1:8765", "localhost", "http://h:p/" -> "http://h:p" (no path, no trailing slash). */
export function normalizeApiBase(text) {
  let t = String(text || "").trim();
  if (!t) throw new TypeError("empty backend address");
  if (!/^https?:\/\//i.test(t)) t = "http://" + t;
  const url = new URL(t);
  if (!url.port && url.protocol === "http:") url.port = "8765";
  return url.origin;
}

/** Whether the address is this machine (the manifest grants those; others need a permission). */
export function isLoopbackBase(base) {
  const host = new URL(base).hostname;
  return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
}

export class ApiClient {
  constructor(base, token = null, fetchImpl = globalThis.fetch.bind(globalThis)) {
    this.base = normalizeApiBase(base);
    this.token = token;
    this.fetch = fetchImpl;
  }

  async request(method, path, { json, body, headers = {}, timeout = TIMEOUT_MS, raw = false } = {}) {
    const h = { ...headers };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    let res;
    try {
      res = await this.fetch(this.base + path, { method, headers: h, body, signal: controller.signal });
    } catch (err) {
      const why = err && err.name === "AbortError" ? `no answer within ${timeout / 1000} s` : String(err.message || err);
      throw new ApiError("network", `cannot reach Sfumato at ${this.base}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) {
      let detail = "";
      let data = null;
      try {
        data = await res.json();
        detail = data.message || data.error || "";
        if (data.hint) detail += ` (${data.hint})`;
      } catch {
        detail = res.statusText || "";
      }
      throw new ApiError("http", `Sfumato answered ${res.status}${detail ? ": " + detail : ""}`, res.status, data);
    }
    if (raw) return res;
    if (res.status === 204) return null;
    try {
      return await res.json();
    } catch {
      throw new ApiError("bad-response", `Sfumato at ${this.base} did not answer JSON to ${method} ${path}`);
    }
  }

  pair(code, client) {
    return this.request("POST", "/v1/pair", { json: { code: String(code).trim(), client } });
  }
  status() {
    return this.request("GET", "/v1/status");
  }
  sites() {
    return this.request("GET", "/v1/sites");
  }
  updateSite(id, changes) {
    return this.request("PUT", `/v1/sites/${encodeURIComponent(id)}`, { json: changes });
  }
  addSite(site) {
    return this.request("POST", "/v1/sites", { json: site });
  }
  removeSite(id) {
    return this.request("DELETE", `/v1/sites/${encodeURIComponent(id)}`);
  }
  updateSettings(changes) {
    return this.request("PUT", "/v1/settings", { json: changes });
  }
  activity(limit = 50, site = "") {
    const q = site ? `&site=${encodeURIComponent(site)}` : "";
    return this.request("GET", `/v1/activity?limit=${Number(limit)}${q}`);
  }

  /** Protect an image for the preview: the protected bytes and the X-Sfumato-* metrics. */
  async protect(blob, strength) {
    const q = strength ? `?strength=${encodeURIComponent(strength)}` : "";
    const res = await this.request("POST", `/v1/protect${q}`, {
      body: blob,
      headers: { "Content-Type": blob.type || "application/octet-stream" },
      timeout: PROTECT_TIMEOUT_MS,
      raw: true,
    });
    const metrics = {};
    res.headers.forEach((value, name) => {
      if (name.toLowerCase().startsWith("x-sfumato-")) metrics[name.slice(10).toLowerCase()] = value;
    });
    return { blob: await res.blob(), metrics };
  }
}
