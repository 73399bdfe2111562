// The store packages (scripts/package.js): one manifest per browser from the shared one.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { browserManifest, chromiumProblems } from "../../scripts/package.js";

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const shared = JSON.parse(readFileSync(path.join(ROOT, "src", "manifest.json"), "utf8"));

test("the Chromium package has the service worker and none of Firefox's keys", () => {
  const m = browserManifest(shared, "chromium");
  assert.deepEqual(m.background, { service_worker: "background.js", type: "module" });
  assert.ok(!("browser_specific_settings" in m));
  assert.deepEqual(chromiumProblems(m), []);
  assert.ok(chromiumProblems(shared).length > 0, "the shared manifest would not pass as is");
});

test("the Firefox package has background scripts and its add-on id", () => {
  const m = browserManifest(shared, "firefox");
  assert.deepEqual(m.background, { scripts: ["background.js"], type: "module" });
  assert.equal(m.browser_specific_settings.gecko.id, shared.browser_specific_settings.gecko.id);
  assert.ok(m.browser_specific_settings.gecko.strict_min_version);
});

test("both packages carry the version of src/manifest.json, the one place it is written", () => {
  for (const browser of ["chromium", "firefox"]) {
    assert.equal(browserManifest(shared, browser).version, shared.version);
  }
  assert.ok(!("version" in JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"))));
  assert.deepEqual(chromiumProblems({ ...browserManifest(shared, "chromium"), version: "1.0-beta" }).length, 1);
  assert.throws(() => browserManifest(shared, "safari"), /no package for safari/);
});
