// Debian's Chromium with the unpacked extension, headless, driven by puppeteer-core over CDP (the
// same driver drives Firefox over WebDriver BiDi: see firefox.js).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export function chromiumAvailable() {
  return existsSync(CHROMIUM);
}

const isWorker = (target) => target.type() === "service_worker" && target.url().startsWith("chrome-extension://");

/**
 * Launch with the extension in `extensionDir`. `hostRules` maps the site to the local test server
 * for direct connections; `spki` lists certificate keys to accept (the test site's and the
 * Sfumato CA's, as a user who trusted the CA would).
 */
export async function launchWithExtension(extensionDir, { hostRules = "", spki = [], lang = "en-US" } = {}) {
  const profile = mkdtempSync(path.join(os.tmpdir(), "sfumato-e2e-profile-"));
  const args = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    `--disable-extensions-except=${extensionDir}`,
    `--load-extension=${extensionDir}`,
    `--lang=${lang}`, // the UI language, which chrome.i18n follows
  ];
  if (hostRules) args.push(`--host-resolver-rules=${hostRules}`);
  if (spki.length) args.push(`--ignore-certificate-errors-spki-list=${spki.join(",")}`);
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true, // the new headless mode, which runs extensions
      userDataDir: profile,
      args,
      ignoreDefaultArgs: ["--disable-extensions"],
      defaultViewport: { width: 1100, height: 900 },
      env: { ...process.env, LANGUAGE: lang, LANG: `${lang.replace("-", "_")}.UTF-8` },
    });
    const worker = await browser.waitForTarget(isWorker, { timeout: 20000 });
    const extensionId = new URL(worker.url()).host;
    // On first install the extension opens its options page (pairing starts there); hand it over
    // instead of racing it with a second one.
    const optionsTarget = await browser.waitForTarget((t) => t.url().endsWith("/options/options.html"), { timeout: 15000 });
    const options = await optionsTarget.page();
    await options.setViewport({ width: 1100, height: 900 });
    await options.waitForSelector("body[data-ready=true]");
    return {
      browser,
      extensionId,
      profile,
      options,
      /** The live service worker (MV3 may have restarted it). */
      async worker() {
        const target = browser.targets().find(isWorker) || (await browser.waitForTarget(isWorker, { timeout: 10000 }));
        return target.worker();
      },
      newPage: () => browser.newPage(),
      close: () => browser.close(),
    };
  } catch (err) {
    await browser?.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}

// Small page helpers shared by the tests (they wait for the element, as a user would).
export async function text(page, selector) {
  await page.waitForSelector(selector);
  return page.$eval(selector, (el) => el.textContent);
}
export async function attribute(page, selector, name) {
  await page.waitForSelector(selector);
  return page.$eval(selector, (el, n) => el.getAttribute(n), name);
}
export const fill = (page, selector, value) => page.locator(selector).fill(value);
export const click = (page, selector) => page.locator(selector).click();

/** A screenshot of a page (brought to the front first: a background tab never paints). */
export async function screenshot(page, options) {
  await page.bringToFront();
  await page.screenshot(options);
}

/** Choose a file in an <input type=file>, as the file dialog would. */
export async function chooseFile(page, selector, file) {
  const input = await page.waitForSelector(selector);
  await input.uploadFile(file);
}
