// The popup renders the service worker's view of the current tab and sends intents; it keeps no
// state of its own. `?tab=<id>` selects the tab explicitly (used when opened as a page).
import { ext } from "../lib/browser_api.js";
import { localize, timeAgo } from "../lib/i18n.js";
import { send } from "../lib/messages.js";
import { ensureSiteAccess } from "../lib/site_access.js";
import { caText, connectionText, outcomeText, refusalText } from "../lib/view_text.js";

const t = (key, subs) => ext.i18n.getMessage(key, subs) || key;
const $ = (id) => document.getElementById(id);
let target = {};
let current = null;

async function resolveTarget() {
  const param = new URLSearchParams(location.search).get("tab");
  if (param && /^\d+$/.test(param)) return { tabId: Number(param) };
  const [tab] = await ext.tabs.query({ active: true, currentWindow: true });
  return tab ? { tabId: tab.id } : {};
}

function showError(err) {
  const box = $("error");
  box.hidden = !err;
  box.textContent = err ? String(err.message || err) : "";
}

function render(view) {
  current = view;
  const conn = connectionText(t, view);
  const pill = $("connection-pill");
  pill.textContent = conn.text;
  pill.dataset.tone = conn.tone;

  const site = view.site;
  // A revoked token needs pairing again, not the "unreachable" choice.
  const revoked = view.connection.state === "unauthorized";
  $("unpaired-section").hidden = view.paired && !revoked;
  $("site-section").hidden = !site;
  $("add-section").hidden = !view.canAddSite;
  $("no-site-section").hidden = Boolean(site || view.host || !view.paired);
  if (view.canAddSite) $("add-text").textContent = t("noProfile", [view.host]);

  if (site) {
    $("site-name").textContent = site.name;
    $("site-host").textContent = view.host;
    const power = $("power");
    power.setAttribute("aria-checked", String(site.enabled));
    power.classList.toggle("on", site.enabled);
    const problemKey =
      view.problem === "refused"
        ? "powerRefused"
        : view.problem === "routing"
          ? view.routingProblem === "policy" ? "routingPolicy" : "routingOtherExtension"
          : view.failMode === "direct" ? "powerUnreachableDirect" : "powerUnreachableBlocked";
    const stateKey = !site.enabled ? "powerOff" : view.badge === "problem" ? problemKey : "powerOn";
    $("power-state").textContent = t(stateKey);
    $("power-state").dataset.tone = !site.enabled ? "muted" : view.badge === "problem" ? "bad" : "ok";
    for (const radio of document.querySelectorAll('input[name="strength"]')) {
      radio.checked = radio.value === site.strength;
      radio.disabled = !site.enabled;
    }
  }

  const unreachable = view.paired && (view.connection.state === "unreachable" || view.connection.state === "error");
  $("unreachable-section").hidden = !unreachable;
  if (unreachable) {
    $("unreachable-text").textContent =
      view.failMode === "block" ? t("unreachableBlocked", [view.apiBase]) : t("unreachableDirect", [view.apiBase]);
    for (const radio of document.querySelectorAll('input[name="failMode"]')) radio.checked = radio.value === view.failMode;
  }

  $("backend-state").textContent = view.status && view.status.version ? `${conn.text} · v${view.status.version}` : conn.text;
  const proxy = view.status && view.status.proxy;
  $("proxy-address").textContent = proxy ? `${proxy.host}:${proxy.port}` : "—";
  $("ca-state").textContent = caText(t, view.status);

  $("activity-heading").textContent = site ? t("activityHeading") : t("activityHeadingAll");
  const list = $("activity-list");
  list.replaceChildren(
    ...view.activity.map((e) => {
      const li = document.createElement("li");
      li.dataset.outcome = e.outcome;
      const what = document.createElement("strong");
      what.textContent = outcomeText(t, e);
      const when = document.createElement("span");
      when.className = "muted";
      when.textContent = " · " + timeAgo(e.time, Date.now(), ext.i18n.getUILanguage());
      li.append(what, when);
      const reason = e.outcome === "refused" ? refusalText(t, e).text : e.reason;
      if (reason) {
        const why = document.createElement("div");
        why.className = "reason";
        why.textContent = reason;
        li.append(why);
      }
      return li;
    }),
  );
  $("activity-empty").hidden = view.activity.length > 0;
}

async function intent(type, fields = {}) {
  showError(null);
  try {
    render(await send(ext.runtime, type, { ...target, ...fields }));
  } catch (err) {
    showError(err);
    try {
      render(await send(ext.runtime, "getState", target));
    } catch {
      // The worker is gone; the error above says enough.
    }
  }
}

async function main() {
  localize(document, t);
  target = await resolveTarget();
  $("power").addEventListener("click", async () => {
    if (!current || !current.site) return;
    const site = current.site;
    if (!site.enabled && !(await ensureSiteAccess(ext, site.hosts))) {
      showError(t("errorSiteAccess", [site.name]));
      return;
    }
    intent("setSite", { siteId: site.id, enabled: !site.enabled });
  });
  for (const radio of document.querySelectorAll('input[name="strength"]')) {
    radio.addEventListener("change", () => intent("setSite", { siteId: current.site.id, strength: radio.value }));
  }
  for (const radio of document.querySelectorAll('input[name="failMode"]')) {
    radio.addEventListener("change", () => intent("setOptions", { failMode: radio.value }));
  }
  $("add-site").addEventListener("click", async () => {
    if (!(await ensureSiteAccess(ext, [current.host.replace(/^www\./, "")]))) {
      showError(t("errorSiteAccess", [current.host]));
      return;
    }
    intent("addSite");
  });
  const openOptions = () => ext.runtime.openOptionsPage();
  $("open-options").addEventListener("click", openOptions);
  $("pair-now").addEventListener("click", openOptions);
  await intent("getState");
  await intent("refresh");
  document.body.dataset.ready = "true";
}

main();
