import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "src");
const manifest = JSON.parse(readFileSync(path.join(SRC, "manifest.json"), "utf8"));

test("one manifest for both browsers: service worker for Chromium, scripts for Firefox", () => {
  assert.equal(manifest.manifest_version, 3);
  assert.equal(manifest.background.service_worker, "background.js");
  assert.deepEqual(manifest.background.scripts, ["background.js"]);
  assert.equal(manifest.background.type, "module");
  assert.ok(manifest.browser_specific_settings.gecko.id);
});

test("permissions stay minimal: no webRequest, no blanket host access", () => {
  assert.deepEqual([...manifest.permissions].sort(), ["alarms", "notifications", "proxy", "storage", "tabs"]);
  assert.deepEqual(manifest.host_permissions, ["http://127.0.0.1/*", "http://localhost/*"]);
  // One pattern for both schemes: Firefox refuses a request for "*://site/*" unless a single
  // optional pattern covers it (two patterns "http://*/*" + "https://*/*" do not).
  assert.deepEqual(manifest.optional_host_permissions, ["*://*/*"]);
});

test("every file the manifest names exists", () => {
  const files = [
    manifest.background.service_worker,
    manifest.action.default_popup,
    manifest.options_ui.page,
    ...Object.values(manifest.icons),
    ...Object.values(manifest.action.default_icon),
  ];
  for (const f of files) assert.ok(existsSync(path.join(SRC, f)), `${f} is missing`);
});
