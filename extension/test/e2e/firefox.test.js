// The same extension in real headless Firefox ESR: proxy.onRequest routing (not PAC), pairing
// through the options page, the popup switch, and uploads through the proxy to the local Tumblr
// double. Firefox has no --host-resolver-rules, so with protection off the offline machine cannot
// resolve the site: that case checks that the upload no longer goes through Sfumato.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { SITE_HOST, startArtSite } from "./support/art_site.js";
import { backendAvailable, buildFixtures, pairingCode, startServe } from "./support/backend.js";
import { firefoxAvailable, launchFirefoxWithExtension } from "./support/firefox.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXTENSION = path.resolve(HERE, "..", "..", "src");
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

async function waitFor(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("extension end to end in Firefox (proxy.onRequest + sfumato serve)", { timeout: 180000 }, () => {
  let tmp, fixtures, site, serve, ff, ext, page, tabId;

  async function upload(file) {
    const n = Number(await page.$eval("#result", (o) => o.dataset.n));
    const input = await page.$("#file");
    await input.uploadFile(file);
    await page.click("button[type=submit]");
    await page.waitForSelector(`#result[data-n="${n + 1}"]`, { timeout: 30000 });
    return page.$eval("#result", (o) => ({ status: o.dataset.status, error: o.dataset.error }));
  }

  async function setProtection(on) {
    await ff.openExtensionPage(ext, `popup/popup.html?tab=${tabId}`);
    if ((await ext.$eval("#power", (b) => b.getAttribute("aria-checked"))) !== String(on)) await ext.click("#power");
    await ext.waitForSelector(`#power[aria-checked="${on}"]`);
  }

  before(async () => {
    assert.ok(firefoxAvailable(), "Firefox ESR is missing: run `make browser` (Debian's firefox-esr package)");
    assert.ok(backendAvailable(), "the project's .venv with `sfumato` is missing");
    tmp = mkdtempSync(path.join(os.tmpdir(), "sfumato-e2e-ff-"));
    fixtures = await buildFixtures(tmp);
    site = await startArtSite(tmp);
    serve = await startServe({ dataDir: path.join(tmp, "data"), model: fixtures.model, upstream: `127.0.0.1:${site.port}` });
    ff = await launchFirefoxWithExtension(EXTENSION);
    ext = await ff.browser.newPage();
  });

  after(async () => {
    await ff?.browser.close().catch(() => {});
    await serve?.stop();
    await site?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    if (ff) rmSync(ff.profile, { recursive: true, force: true });
  });

  it("pairs through the options page and switches Tumblr on (host access granted)", async () => {
    await ff.openExtensionPage(ext, "options/options.html");
    await ext.$eval("#api-base", (i) => (i.value = ""));
    await ext.type("#api-base", serve.api);
    await ext.type("#pair-code", await pairingCode(path.join(tmp, "data")));
    await ext.click("#pair");
    await ext.waitForSelector('#connection-pill[data-tone="ok"]');
    await ext.waitForSelector('#sites-body button[data-site="tumblr"]');
    await ext.click('#sites-body button[data-site="tumblr"]');
    await ext.waitForSelector('#sites-body button[data-site="tumblr"][aria-checked="true"]');
    const granted = await ext.evaluate(() => browser.permissions.contains({ origins: ["*://www.tumblr.com/*"] }));
    assert.equal(granted, true, "Firefox gave the extension access to the site's hosts");
  });

  it("the site loads through Sfumato and receives a protected image", async () => {
    page = await ff.browser.newPage();
    await page.goto(`https://${SITE_HOST}/`);
    assert.match(await page.title(), /Post a photo/);
    const tabs = await ext.evaluate((host) => browser.tabs.query({ url: `https://${host}/*` }), SITE_HOST);
    tabId = tabs[0].id;
    const result = await upload(fixtures.artwork);
    assert.equal(result.status, "201");
    assert.equal(site.received.length, 1);
    const got = site.received[0];
    assert.ok(!got.equals(readFileSync(fixtures.artwork)), "not the original bytes");
    assert.ok(got.subarray(0, 8).equals(PNG_SIGNATURE));
    await ff.openExtensionPage(ext, `popup/popup.html?tab=${tabId}`);
    assert.equal(await ext.$eval("#site-name", (e) => e.textContent), "Tumblr");
    await ext.waitForSelector('#activity-list li[data-outcome="protected"]');
  });

  it("a broken image is refused and the notification is raised", async () => {
    const result = await upload(fixtures.broken);
    assert.notEqual(result.status, "201");
    assert.ok(result.error, "X-Sfumato-Error");
    assert.equal(site.received.length, 1, "the site received nothing");
    // Headless Firefox has no alert service to keep notifications listed in getAll(), so check
    // the record the service worker writes once notifications.create() has resolved.
    const note = await waitFor("the refusal notification", async () => {
      const { lastNotification } = await ext.evaluate(() => browser.storage.local.get("lastNotification"));
      return lastNotification && lastNotification.id.startsWith("refused-") ? lastNotification : null;
    });
    assert.equal(note.title, "Upload to Tumblr refused");
  });

  it("protection off: the upload no longer goes through Sfumato", async () => {
    const before = await ext.evaluate(() => browser.storage.local.get("activity"));
    await setProtection(false);
    const result = await upload(fixtures.artwork);
    // Direct, the offline machine cannot resolve the site: nothing is sent and Sfumato saw nothing.
    assert.equal(result.status, "network-error");
    assert.equal(site.received.length, 1);
    await ff.openExtensionPage(ext, `popup/popup.html?tab=${tabId}`);
    const after = await ext.evaluate(() => browser.storage.local.get("activity"));
    assert.equal(after.activity.length, before.activity.length, "no new upload in Sfumato's activity");
  });
});
