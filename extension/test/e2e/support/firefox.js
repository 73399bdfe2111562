// Debian's Firefox ESR with the extension installed as a temporary add-on, driven by
// puppeteer-core over WebDriver BiDi. Extension pages are opened with a fixed moz-extension UUID
// (pref extensions.webextensions.uuids); BiDi cannot follow the process switch into an extension
// page, so openExtensionPage starts the navigation and then waits on the page's own content.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

export const FIREFOX = process.env.FIREFOX_PATH || "/usr/bin/firefox-esr";
const ADDON_ID = "sfumato@sfumato.invalid";
const UUID = "5f6d3a52-8a8e-4d43-9c1e-2d7f3c1a9b10";

export function firefoxAvailable() {
  return existsSync(FIREFOX);
}

export async function launchFirefoxWithExtension(extensionDir) {
  const profile = mkdtempSync(path.join(os.tmpdir(), "sfumato-e2e-firefox-"));
  const browser = await puppeteer
    .launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    // Accepts the test site's throwaway certificate and Sfumato's CA, as a browser that trusts
    // the CA would.
    acceptInsecureCerts: true,
    args: ["--remote-allow-system-access"],
    extraPrefsFirefox: {
      "extensions.webextensions.uuids": JSON.stringify({ [ADDON_ID]: UUID }),
      // Grant optional host permissions without a prompt (a user clicks "Allow" there).
      "extensions.webextOptionalPermissionPrompts": false,
      "intl.locale.requested": "en-US",
    },
  })
    .catch((err) => {
      rmSync(profile, { recursive: true, force: true });
      throw err;
    });
  try {
    await browser.installExtension(extensionDir);
  } catch (err) {
    await browser.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  const base = `moz-extension://${UUID}`;
  return {
    browser,
    profile,
    async openExtensionPage(page, pathAndQuery) {
      await page.goto(`${base}/${pathAndQuery}`, { timeout: 1500 }).catch(() => {});
      await page.waitForSelector("body[data-ready=true]", { timeout: 20000 });
      return page;
    },
  };
}
