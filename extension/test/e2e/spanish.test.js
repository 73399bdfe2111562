// The extension speaks the browser's language: with Chromium in Spanish the popup and the options
// page come from _locales/es (no backend needed: an unpaired extension).
import assert from "node:assert/strict";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { attribute, chromiumAvailable, launchWithExtension, screenshot, text } from "./support/browser.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXTENSION = path.resolve(HERE, "..", "..", "src");
const SCREENSHOTS = path.resolve(process.env.SCREENSHOT_DIR || path.join(HERE, "..", "..", "test-results"));

describe("extension in Spanish (Chromium --lang=es)", { timeout: 60000 }, () => {
  let browser;
  before(async () => {
    assert.ok(chromiumAvailable(), "Chromium is missing: run `make browser`");
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchWithExtension(EXTENSION, { lang: "es" });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    if (browser) rmSync(browser.profile, { recursive: true, force: true });
  });

  it("the popup and options page are in Spanish, with lang set for screen readers", async () => {
    const popup = await browser.newPage();
    await popup.setViewport({ width: 360, height: 420 });
    await popup.goto(`chrome-extension://${browser.extensionId}/popup/popup.html`);
    await popup.waitForSelector("body[data-ready=true]");
    assert.equal(await text(popup, "#connection-pill"), "Sin vincular");
    assert.equal(await text(popup, "#pair-now"), "Vincular ahora");
    assert.equal(await attribute(popup, "html", "lang"), "es");
    await screenshot(popup, { path: path.join(SCREENSHOTS, "popup-es.png") });

    const options = browser.options;
    assert.equal(await text(options, "h1"), "Ajustes de Sfumato");
    assert.equal(await text(options, 'label[for="pair-code"]'), "Código de vinculación");
  });

  it("keyboard: the pairing form is reachable with Tab and labelled", async () => {
    const options = browser.options;
    await options.focus("#api-base");
    await options.keyboard.press("Tab");
    assert.equal(await options.evaluate(() => document.activeElement.id), "pair-code");
    const label = await options.evaluate(() => document.activeElement.labels[0].textContent);
    assert.equal(label, "Código de vinculación");
  });
});
