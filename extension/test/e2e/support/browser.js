// Debian's Chromium with the unpacked extension, headless, driven by playwright-core.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export function chromiumAvailable() {
  return existsSync(CHROMIUM);
}

/**
 * Launch with the extension in `extensionDir`. `hostRules` maps the site to the local test server
 * for direct connections; `spki` lists certificate keys to accept (the test site's and the
 * Sfumato CA's, as a user who trusted the CA would).
 */
export async function launchWithExtension(extensionDir, { hostRules = "", spki = [], lang = "en-US" } = {}) {
  const profile = mkdtempSync(path.join(os.tmpdir(), "sfumato-e2e-profile-"));
  const args = [
    "--headless=new",
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
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: false, // the --headless=new flag above: the old headless mode has no extensions
      args,
      locale: lang,
      viewport: { width: 1100, height: 900 },
    });
    let [worker] = context.serviceWorkers();
    if (!worker) worker = await context.waitForEvent("serviceworker", { timeout: 20000 });
    const extensionId = new URL(worker.url()).host;
    // On first install the extension opens its options page (pairing starts there); hand it over
    // instead of racing it with a second one.
    const deadline = Date.now() + 15000;
    let options;
    while (!(options = context.pages().find((p) => p.url().endsWith("/options/options.html")))) {
      if (Date.now() > deadline) throw new Error("the extension did not open its options page on install");
      await new Promise((r) => setTimeout(r, 100));
    }
    await options.waitForSelector("body[data-ready=true]");
    return { context, worker, extensionId, profile, options };
  } catch (err) {
    await context?.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}
