// Every npm package the tests install runs on the Node.js the README names (package.json
// "engines"), so `npm ci` never warns EBADENGINE there.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import semver from "semver";

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const read = (file) => JSON.parse(readFileSync(path.join(ROOT, file), "utf8"));

test("every locked package accepts the oldest Node.js we name", () => {
  const ours = read("package.json").engines.node;
  const oldest = semver.minVersion(ours).version;
  assert.equal(semver.major(oldest), 20, "the README and package.json name Node.js 20");
  const readme = readFileSync(path.join(ROOT, "..", "README.md"), "utf8");
  assert.ok(readme.includes(`Node.js ${oldest.replace(/\.0$/, "")}`), `the README names Node.js ${oldest}`);
  const refused = Object.entries(read("package-lock.json").packages)
    .filter(([name, meta]) => name && meta.engines?.node && !semver.satisfies(oldest, meta.engines.node))
    .map(([name, meta]) => `${name.replace(/^.*node_modules\//, "")} needs node ${meta.engines.node}`);
  assert.deepEqual(refused, []);
  assert.ok(semver.satisfies(process.version, ours), `this Node.js (${process.version}) is one we name`);
});

test("one browser driver: puppeteer-core drives Chromium (CDP) and Firefox (WebDriver BiDi)", () => {
  const deps = Object.keys(read("package.json").devDependencies);
  assert.ok(deps.includes("puppeteer-core"));
  assert.ok(!deps.includes("playwright-core") && !deps.includes("playwright"));
});
