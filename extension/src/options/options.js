// Options page: pairing, behaviour, the site list and the before/after preview. Settings go to
// the service worker as intents; only the preview calls the API directly, because runtime
// messages are JSON in Chromium and would inflate a multi-megabyte image as base64.
import { ApiClient, isLoopbackBase, normalizeApiBase } from "../lib/api_client.js";
import { ext } from "../lib/browser_api.js";
import { localize } from "../lib/i18n.js";
import { diffImages } from "../lib/image_diff.js";
import { send } from "../lib/messages.js";
import { ensureSiteAccess } from "../lib/site_access.js";
import { caText, connectionText } from "../lib/view_text.js";

const t = (key, subs) => ext.i18n.getMessage(key, subs) || key;
const $ = (id) => document.getElementById(id);
const AMPLIFY = 10;
let current = null;

function say(id, text, tone = "") {
  $(id).textContent = text;
  $(id).dataset.tone = tone;
}

function strengthSelect(site) {
  const select = document.createElement("select");
  select.setAttribute("aria-label", t("strengthFor", [site.name]));
  for (const value of ["low", "default", "high"]) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = t(`strength_${value}`);
    option.selected = site.strength === value;
    select.append(option);
  }
  select.addEventListener("change", () => intent("setSite", { siteId: site.id, strength: select.value }));
  return select;
}

function siteSwitch(site) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "switch" + (site.enabled ? " on" : "");
  button.setAttribute("role", "switch");
  button.setAttribute("aria-checked", String(site.enabled));
  button.setAttribute("aria-label", t("protectSiteNamed", [site.name]));
  button.dataset.site = site.id;
  button.append(Object.assign(document.createElement("span"), { className: "switch-knob" }));
  button.addEventListener("click", async () => {
    if (!site.enabled && !(await ensureSiteAccess(ext, site.hosts))) {
      $("sites-result").hidden = false;
      say("sites-result", t("errorSiteAccess", [site.name]), "bad");
      return;
    }
    intent("setSite", { siteId: site.id, enabled: !site.enabled });
  });
  return button;
}

function render(view) {
  current = view;
  const conn = connectionText(t, view);
  say("connection-pill", conn.text, conn.tone);
  if (document.activeElement !== $("api-base")) $("api-base").value = view.apiBase;
  $("unpair").hidden = !view.paired;
  const proxy = view.status && view.status.proxy;
  $("proxy-address").textContent = proxy ? `${proxy.host}:${proxy.port}` : "—";
  $("ca-state").textContent = caText(t, view.status);
  $("ca-link").href = `${view.apiBase}/v1/ca.pem`;
  $("model-id").textContent = (view.status && view.status.modelId) || "—";
  for (const radio of document.querySelectorAll('input[name="failMode"]')) radio.checked = radio.value === view.failMode;
  $("default-strength").value = view.defaultStrength;

  $("sites-empty").hidden = view.sites.length > 0;
  $("sites-table").hidden = view.sites.length === 0;
  $("sites-body").replaceChildren(
    ...view.sites.map((site) => {
      const tr = document.createElement("tr");
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = site.name;
      const hosts = document.createElement("td");
      hosts.className = "hosts";
      hosts.textContent = site.hosts.join(", ");
      const toggle = document.createElement("td");
      toggle.append(siteSwitch(site));
      const strength = document.createElement("td");
      strength.append(strengthSelect(site));
      const actions = document.createElement("td");
      if (site.custom) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = t("removeSite");
        remove.setAttribute("aria-label", t("removeSiteNamed", [site.name]));
        remove.addEventListener("click", () => intent("removeSite", { siteId: site.id }));
        actions.append(remove);
      }
      tr.append(name, hosts, toggle, strength, actions);
      return tr;
    }),
  );
}

/** Send an intent and render the answer; errors show next to the control that caused them. */
async function intent(type, fields = {}, where = "sites-result") {
  $(where).hidden = false;
  say(where, "");
  try {
    render(await send(ext.runtime, type, fields));
    return true;
  } catch (err) {
    say(where, String(err.message || err), "bad");
    return false;
  }
}

async function pair(event) {
  event.preventDefault();
  let base;
  try {
    base = normalizeApiBase($("api-base").value);
  } catch {
    say("pair-result", t("errorBadAddress"), "bad");
    return;
  }
  // A backend on another machine needs host access; ask now, while the click counts as a gesture.
  if (!isLoopbackBase(base)) {
    const granted = await ext.permissions.request({ origins: [`${base}/*`] });
    if (!granted) {
      say("pair-result", t("errorPermission", [base]), "bad");
      return;
    }
  }
  say("pair-result", t("pairing"));
  const ok = await intent("pair", { apiBase: base, code: $("pair-code").value }, "pair-result");
  if (ok) {
    $("pair-code").value = "";
    say("pair-result", t("pairedOk"), "ok");
  }
}

async function loadImage(blob) {
  const url = URL.createObjectURL(blob);
  const img = new Image();
  img.src = url;
  await img.decode();
  return { img, url };
}

function pixels(img) {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

function fact(dl, label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
}

async function preview(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    say("preview-status", t("previewNotImage"), "bad");
    return;
  }
  say("preview-status", t("previewWorking"));
  $("preview").hidden = true;
  $("preview-numbers").hidden = true;
  try {
    const auth = await send(ext.runtime, "previewAuth");
    if (!auth.token) throw new Error(t("conn_unpaired"));
    const api = new ApiClient(auth.apiBase, auth.token);
    const started = performance.now();
    const result = await api.protect(file, $("preview-strength").value);
    const elapsed = performance.now() - started;
    const original = await loadImage(file);
    const protectedImg = await loadImage(result.blob);
    $("img-original").src = original.url;
    $("img-original").alt = t("previewOriginalAlt", [file.name]);
    $("img-protected").src = protectedImg.url;
    $("img-protected").alt = t("previewProtectedAlt", [file.name]);
    const a = pixels(original.img);
    const b = pixels(protectedImg.img);
    const stats = diffImages(a.data, b.data, AMPLIFY);
    const canvas = $("img-diff");
    canvas.width = a.width;
    canvas.height = a.height;
    canvas.getContext("2d").putImageData(new ImageData(stats.diff, a.width, a.height), 0, 0);
    canvas.setAttribute("aria-label", t("previewDiffAlt", [String(AMPLIFY)]));
    $("diff-caption").textContent = t("previewDiff", [String(AMPLIFY)]);
    const dl = $("preview-numbers");
    dl.replaceChildren();
    fact(dl, t("numSize"), `${a.width} × ${a.height}`);
    fact(dl, t("numBytes"), `${file.size.toLocaleString()} → ${result.blob.size.toLocaleString()}`);
    fact(dl, t("numPsnr"), Number.isFinite(stats.psnr) ? `${stats.psnr.toFixed(2)} dB` : "∞");
    fact(dl, t("numMeanAbs"), stats.meanAbs.toFixed(2));
    fact(dl, t("numMaxAbs"), String(stats.maxAbs));
    fact(dl, t("numChanged"), `${(stats.changedShare * 100).toFixed(1)} %`);
    fact(dl, t("numTime"), `${Math.round(elapsed)} ms`);
    const labels = { model: "numModel", psnr: "numServerPsnr", strength: "numStrength", timings: "numTimings" };
    for (const [name, value] of Object.entries(result.metrics)) {
      fact(dl, labels[name] ? t(labels[name]) : `X-Sfumato-${name}`, name === "psnr" && value !== "inf" ? `${value} dB` : value);
    }
    $("preview").hidden = false;
    dl.hidden = false;
    say("preview-status", t("previewDone"), "ok");
  } catch (err) {
    say("preview-status", String(err.message || err), "bad");
  }
}

async function main() {
  localize(document, t);
  $("pair-form").addEventListener("submit", pair);
  $("unpair").addEventListener("click", () => intent("unpair", {}, "pair-result"));
  for (const radio of document.querySelectorAll('input[name="failMode"]')) {
    radio.addEventListener("change", () => intent("setOptions", { failMode: radio.value }));
  }
  $("default-strength").addEventListener("change", () => intent("setOptions", { defaultStrength: $("default-strength").value }));
  $("preview-file").addEventListener("change", () => preview($("preview-file").files[0]));
  const drop = $("drop");
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("preview-file").click();
    }
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    preview(e.dataTransfer.files[0]);
  });
  await intent("getState", {}, "pair-result");
  if (current && current.paired) await intent("refresh", {}, "pair-result");
  document.body.dataset.ready = "true";
}

main();
