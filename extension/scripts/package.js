// `npm run package` (`make package`): the store packages, built by web-ext from src/ with one
// manifest per browser, so neither store sees the other's keys:
//   dist/sfumato-<version>-chromium.zip  Chrome Web Store, Edge Add-ons: background.service_worker
//   dist/sfumato-<version>-firefox.zip   addons.mozilla.org: background.scripts and
//                                        browser_specific_settings (add-on id, minimum versions)
// The unpacked folders stay next to them (dist/chromium, dist/firefox) for "Load unpacked".
// The version is the one in src/manifest.json, the one place it is written. The Firefox package
// must pass `web-ext lint` without a warning; the Chromium one must pass our own manifest check
// (addons-linter only knows Firefox).
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const SRC = path.join(ROOT, "src");
const DIST = path.join(ROOT, "dist");
const WEB_EXT = path.join(ROOT, "node_modules", ".bin", "web-ext");

/** The manifest of one browser's package, from the shared one (which both load unpacked). */
export function browserManifest(shared, browser) {
  const manifest = structuredClone(shared);
  const { service_worker: worker, scripts, type } = shared.background;
  if (browser === "chromium") {
    manifest.background = { service_worker: worker, type };
    delete manifest.browser_specific_settings;
  } else if (browser === "firefox") {
    manifest.background = { scripts, type };
  } else {
    throw new Error(`no package for ${browser}`);
  }
  return manifest;
}

/** Problems a Chromium store would have with the manifest (empty: none). */
export function chromiumProblems(manifest) {
  const problems = [];
  if (manifest.manifest_version !== 3) problems.push("manifest_version must be 3");
  if (!manifest.background?.service_worker) problems.push("no background.service_worker");
  for (const key of ["browser_specific_settings", "applications"]) {
    if (key in manifest) problems.push(`${key} is Firefox's key`);
  }
  if (manifest.background?.scripts) problems.push("background.scripts is Firefox's key in MV3");
  if (!/^\d+(\.\d+){0,3}$/.test(manifest.version || "")) problems.push(`version ${manifest.version} is not 1-4 dot-separated integers`);
  return problems;
}

function run(...args) {
  execFileSync(WEB_EXT, args, { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
}

function main() {
  const shared = JSON.parse(readFileSync(path.join(SRC, "manifest.json"), "utf8"));
  const version = shared.version;
  mkdirSync(DIST, { recursive: true });
  for (const browser of ["chromium", "firefox"]) {
    const dir = path.join(DIST, browser);
    rmSync(dir, { recursive: true, force: true });
    cpSync(SRC, dir, { recursive: true });
    const manifest = browserManifest(shared, browser);
    writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    if (browser === "chromium") {
      const problems = chromiumProblems(manifest);
      if (problems.length) throw new Error(`the Chromium manifest: ${problems.join("; ")}`);
    } else {
      run("lint", "--source-dir", dir, "--warnings-as-errors", "--boring");
    }
    const filename = `sfumato-${version}-${browser}.zip`;
    run("build", "--source-dir", dir, "--artifacts-dir", DIST, "--filename", filename, "--overwrite-dest");
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
