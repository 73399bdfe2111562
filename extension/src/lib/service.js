// The service worker's brain: owns the state in storage, talks to `sfumato serve`, applies
// routing, paints badges, raises notifications, and answers the UI's intents. Browser APIs come in
// through `ext` (chrome or browser) so tests can drive it with fakes.

import { ApiClient, ApiError, isLoopbackBase, normalizeApiBase } from "./api_client.js";
import { customSiteHost, hostOfUrl } from "./hosts.js";
import { createRouter } from "./messages.js";
import { Router } from "./routing.js";
import { refusalText } from "./view_text.js";
import {
  Connection,
  FAIL_MODES,
  FAST_POLL_MS,
  SLOW_POLL_MINUTES,
  STRENGTHS,
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
  siteForUrl,
} from "./state.js";

export const POLL_ALARM = "sfumato-poll";
const BADGE_COLORS = { on: "#1e7d32", off: "#6b6b6b", problem: "#c62828" };

function checkStrength(value) {
  if (!STRENGTHS.includes(value)) throw new TypeError(`strength must be one of ${STRENGTHS.join(", ")}`);
  return value;
}

export class Service {
  /**
   * @param {object} ext  chrome / browser
   * @param {{fetch?: Function, now?: () => number, clientName?: string}} options
   */
  constructor(ext, { fetch = globalThis.fetch?.bind(globalThis), now = () => Date.now(), clientName } = {}) {
    this.ext = ext;
    this.fetch = fetch;
    this.now = now;
    this.clientName = clientName || `Sfumato extension (${ext.proxy?.onRequest ? "Firefox" : "Chromium"})`;
    this.state = defaultState();
    this.router = new Router(ext);
    this.fastTimer = null;
    this.refreshing = null;
    this.queued = null;
    /** The popup's site: its own recent events, fetched when the popup opens (not stored). */
    this.siteActivity = {};
    this.route = createRouter(this.handlers());
    // A storage or proxy error at start must not leave every intent hanging: carry on with
    // defaults (unpaired, nothing routed) and let the next poll try again.
    this.ready = this.load().catch((err) => console.error("Sfumato: could not restore state", err));
  }

  t(key, subs) {
    return this.ext.i18n.getMessage(key, subs) || key;
  }

  /** Register every listener synchronously (MV3 wakes the worker for events registered at start). */
  start() {
    const { ext } = this;
    this.router.listen(this.ready);
    ext.runtime.onMessage.addListener((message, sender, sendResponse) => {
      this.ready.then(() => this.route(message, sender)).then(sendResponse);
      return true;
    });
    ext.alarms.onAlarm.addListener((alarm) => {
      if (alarm.name === POLL_ALARM) this.ready.then(() => this.refresh());
    });
    ext.tabs.onUpdated.addListener((tabId, change, tab) => {
      if (change.url || change.status === "complete") this.ready.then(() => this.paintTab(tab).then(() => this.schedule()));
    });
    ext.tabs.onActivated.addListener(({ tabId }) => {
      this.ready.then(() => ext.tabs.get(tabId)).then((tab) => this.paintTab(tab)).catch(() => {});
    });
    ext.tabs.onRemoved.addListener(() => this.ready.then(() => this.schedule()));
    // First install: open the options page, where pairing starts.
    ext.runtime.onInstalled?.addListener(({ reason }) => {
      if (reason === "install") ext.runtime.openOptionsPage();
    });
    ext.alarms.create(POLL_ALARM, { periodInMinutes: SLOW_POLL_MINUTES });
    return this.ready.then(() => this.refresh());
  }

  async load() {
    const stored = await this.ext.storage.local.get(null);
    this.state = { ...defaultState(), ...stored };
    await this.router.apply(buildRoutingTable(this.state));
  }

  async save(changes) {
    Object.assign(this.state, changes);
    await this.ext.storage.local.set(changes);
  }

  client() {
    return new ApiClient(this.state.apiBase, this.state.token, this.fetch);
  }

  /** Record the outcome of talking to the backend in the connection state. */
  async noteConnection(event) {
    await this.save({ connection: nextConnection(this.state.connection, event, this.now()) });
  }

  async noteError(err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.kind === "network") await this.noteConnection({ type: "network", detail: err.message });
    else await this.noteConnection({ type: "http", status: err.status, detail: err.message });
  }

  /**
   * Poll the backend (status, sites, activity). A call during a poll queues one more poll after
   * it (never more), so a caller always sees the backend's state from after its call.
   */
  refresh() {
    if (this.refreshing) {
      if (!this.queued) {
        this.queued = this.refreshing.then(() => {
          this.queued = null;
          return this.refresh();
        });
      }
      return this.queued;
    }
    this.refreshing = this.poll().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  async poll() {
    if (!this.state.token) {
      await this.noteConnection({ type: "unpaired" });
      return this.sync();
    }
    const api = this.client();
    try {
      const [status, sites, activity] = await Promise.all([api.status(), api.sites(), api.activity(50)]);
      const events = normalizeActivity(activity);
      const { refusals, cursor } = newRefusals(events, this.state.activityCursor);
      const refusedAt = { ...this.state.refusedAt };
      for (const e of refusals) refusedAt[e.site] = Math.max(refusedAt[e.site] || 0, e.time || this.now());
      await this.save({
        status: normalizeStatus(status),
        sites: normalizeSites(sites),
        activity: events.slice(0, 50),
        activityCursor: cursor,
        refusedAt,
      });
      await this.noteConnection({ type: "ok" });
      for (const e of refusals) await this.notifyRefusal(e);
    } catch (err) {
      await this.noteError(err);
    }
    return this.sync();
  }

  async notifyRefusal(event) {
    const site = this.state.sites.find((s) => s.id === event.site);
    const name = site ? site.name : event.site || "?";
    // A known code's text says what happened and what to do, in the user's language; otherwise
    // the backend's words, and the general advice.
    const { text, known } = refusalText((key, subs) => this.t(key, subs), event);
    const message = known
      ? text
      : `${text || this.t("refusedNoReason")}\n${event.hint || this.t("refusedWhatToDo")}`;
    const id = `refused-${event.id}`;
    await this.ext.notifications.create(id, {
      type: "basic",
      iconUrl: this.ext.runtime.getURL("icons/icon-128.png"),
      title: this.t("refusedTitle", [name]),
      message,
      priority: 2,
    });
    await this.save({ lastNotification: { id, site: event.site, title: this.t("refusedTitle", [name]), message, time: this.now() } });
  }

  /** Make the browser match the state: routing first (it protects), then badges and polling. */
  async sync() {
    await this.router.apply(buildRoutingTable(this.state));
    this.state.routingProblem = this.router.problem; // derived each time, never stored
    const tabs = await this.ext.tabs.query({});
    await Promise.all(tabs.map((tab) => this.paintTab(tab)));
    this.schedule(tabs);
  }

  async paintTab(tab) {
    if (!tab || tab.id == null || tab.id < 0) return;
    const badge = badgeFor(tab.url || "", this.state, this.now());
    const text = badge.kind === "none" ? "" : this.t(`badge_${badge.kind}`);
    const title =
      badge.kind === "none"
        ? this.t("extensionName")
        : this.t(`badgeTitle_${badge.kind === "problem" ? badge.why : badge.kind}`, [badge.site.name]);
    try {
      await this.ext.action.setBadgeText({ tabId: tab.id, text });
      if (text) await this.ext.action.setBadgeBackgroundColor({ tabId: tab.id, color: BADGE_COLORS[badge.kind] });
      await this.ext.action.setTitle({ tabId: tab.id, title });
    } catch {
      // The tab closed meanwhile: nothing to paint.
    }
  }

  /** Poll every few seconds while a tab shows an enabled site; the alarm covers the rest. */
  async schedule(tabs) {
    const list = tabs || (await this.ext.tabs.query({}));
    const fast = needsFastPoll(list.map((t) => t.url || ""), this.state);
    if (fast && !this.fastTimer) {
      this.fastTimer = setTimeout(() => {
        this.fastTimer = null;
        this.refresh();
      }, FAST_POLL_MS);
    } else if (!fast && this.fastTimer) {
      clearTimeout(this.fastTimer);
      this.fastTimer = null;
    }
  }

  async tabUrl(message) {
    if (typeof message.url === "string") return message.url;
    if (Number.isInteger(message.tabId)) {
      const tab = await this.ext.tabs.get(message.tabId);
      return tab.url || "";
    }
    const [tab] = await this.ext.tabs.query({ active: true, currentWindow: true });
    return (tab && tab.url) || "";
  }

  view(url) {
    const s = this.state;
    const site = url ? siteForUrl(url, s.sites) : null;
    const host = url ? hostOfUrl(url) : "";
    return {
      apiBase: s.apiBase,
      paired: Boolean(s.token),
      connection: s.connection,
      status: s.status,
      failMode: s.failMode,
      defaultStrength: (s.status && s.status.defaultStrength) || "default",
      routing: buildRoutingTable(s).mode,
      routingProblem: s.routingProblem || "",
      sites: s.sites,
      host,
      site,
      canAddSite: Boolean(host && !site && s.token),
      activity: site ? this.siteActivity[site.id] || activityForSite(s.activity, site.id) : s.activity.slice(0, 10),
      badge: url ? badgeFor(url, s, this.now()).kind : "none",
      problem: url ? badgeFor(url, s, this.now()).why || "" : "",
      lastNotification: s.lastNotification || null,
    };
  }

  async changeSite(siteId, changes) {
    const site = this.state.sites.find((s) => s.id === siteId);
    if (!site) throw new TypeError(`unknown site "${siteId}"`);
    const body = {};
    if (typeof changes.enabled === "boolean") body.enabled = changes.enabled;
    if (changes.strength !== undefined) body.strength = checkStrength(changes.strength);
    try {
      await this.client().updateSite(siteId, body);
    } catch (err) {
      await this.noteError(err);
      await this.sync();
      throw err;
    }
    // Route at once from what the backend accepted; the refresh below confirms it.
    await this.save({ sites: this.state.sites.map((s) => (s.id === siteId ? { ...s, ...body } : s)) });
    await this.noteConnection({ type: "ok" });
    await this.sync();
    this.refresh();
  }

  /** The view for the tab (or URL) an intent names, or the global view. */
  async viewFor(m) {
    return this.view(m.tabId != null || m.url ? await this.tabUrl(m) : "");
  }

  handlers() {
    return {
      getState: async (m) => this.viewFor(m),
      refresh: async (m) => {
        await this.refresh();
        // The popup asks for its site's own history: the shared poll only keeps the latest 50
        // events of all sites.
        const site = m.tabId != null || m.url ? siteForUrl(await this.tabUrl(m), this.state.sites) : null;
        if (site && this.state.connection.state === Connection.CONNECTED) {
          try {
            this.siteActivity[site.id] = normalizeActivity(await this.client().activity(5, site.id));
          } catch (err) {
            await this.noteError(err);
          }
        }
        return this.viewFor(m);
      },
      setSite: async (m) => {
        await this.changeSite(String(m.siteId), { enabled: m.enabled, strength: m.strength });
        return this.viewFor(m);
      },
      addSite: async (m) => {
        const host = hostOfUrl(await this.tabUrl(m));
        if (!host) throw new TypeError(this.t("errorNoSiteHere"));
        const pattern = customSiteHost(host);
        // No strength: a new site follows the default strength (options page).
        // Both forms: the backend matches "x.com" exactly, so "*.x.com" covers www. and others.
        const site = { id: customSiteId(pattern), name: pattern, hosts: [pattern, `*.${pattern}`], enabled: true };
        try {
          await this.client().addSite(site);
        } catch (err) {
          await this.noteError(err);
          throw err;
        }
        await this.refresh();
        return this.view(await this.tabUrl(m));
      },
      removeSite: async (m) => {
        await this.client().removeSite(String(m.siteId));
        await this.refresh();
        return this.view("");
      },
      pair: async (m) => {
        const base = normalizeApiBase(m.apiBase || this.state.apiBase);
        const api = new ApiClient(base, null, this.fetch);
        const answer = await api.pair(String(m.code || ""), this.clientName);
        if (!answer || typeof answer.token !== "string" || !answer.token) {
          throw new ApiError("bad-response", "Sfumato did not return a token");
        }
        await this.save({ apiBase: base, token: answer.token, activityCursor: null, refusedAt: {} });
        await this.noteConnection({ type: "paired" });
        await this.refresh();
        return this.view("");
      },
      unpair: async () => {
        await this.save({ token: null, sites: [], status: null, activity: [], activityCursor: null });
        await this.noteConnection({ type: "unpaired" });
        await this.sync();
        return this.view("");
      },
      setOptions: async (m) => {
        const changes = {};
        if (m.failMode !== undefined) {
          if (!FAIL_MODES.includes(m.failMode)) throw new TypeError(`fail mode must be one of ${FAIL_MODES.join(", ")}`);
          changes.failMode = m.failMode;
        }
        if (m.apiBase !== undefined) changes.apiBase = normalizeApiBase(m.apiBase);
        await this.save(changes);
        if (m.defaultStrength !== undefined) {
          // The default strength lives in the backend: sites without their own strength use it.
          await this.client().updateSettings({ strength: checkStrength(m.defaultStrength) });
          await this.refresh();
        }
        await this.sync();
        return this.viewFor(m);
      },
      previewAuth: async () => ({ apiBase: this.state.apiBase, token: this.state.token, loopback: isLoopbackBase(this.state.apiBase) }),
    };
  }
}

export { Connection };
