import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "src");
const load = (lang) => JSON.parse(readFileSync(path.join(SRC, "_locales", lang, "messages.json"), "utf8"));
const placeholders = (text) => (text.match(/\$\d/g) || []).sort().join(",");

function sourceFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === "_locales" ? [] : sourceFiles(full);
    return /\.(js|html|json)$/.test(name) ? [full] : [];
  });
}

test("en and es have the same keys and the same $n substitutions", () => {
  const en = load("en");
  const es = load("es");
  assert.deepEqual(Object.keys(es).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en)) {
    assert.ok(en[key].message.trim(), `en ${key} is empty`);
    assert.ok(es[key].message.trim(), `es ${key} is empty`);
    assert.equal(placeholders(es[key].message), placeholders(en[key].message), `substitutions differ for ${key}`);
  }
});

test("every key the code and pages use exists, and every message is used", () => {
  const en = load("en");
  const used = new Set(); // keys the code asks for by name: they must exist
  const literals = new Set(); // any string literal: a key chosen in code counts as used
  const prefixes = []; // t(`badge_${kind}`): every key with the prefix counts as used
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/\bt\("([A-Za-z_]+)"/g)) used.add(m[1]);
    for (const m of text.matchAll(/data-i18n="([A-Za-z_]+)"/g)) used.add(m[1]);
    for (const m of text.matchAll(/data-i18n-attr="([^"]+)"/g)) for (const pair of m[1].split(",")) used.add(pair.split(":")[1].trim());
    for (const m of text.matchAll(/__MSG_([A-Za-z_]+)__/g)) used.add(m[1]);
    for (const m of text.matchAll(/t\(`([A-Za-z]+_)\$\{/g)) prefixes.push(m[1]);
    for (const m of text.matchAll(/"([A-Za-z_]+)"/g)) literals.add(m[1]);
  }
  for (const key of used) assert.ok(key in en, `"${key}" is used but missing from _locales/en`);
  const unused = Object.keys(en).filter((k) => !used.has(k) && !literals.has(k) && !prefixes.some((p) => k.startsWith(p)));
  assert.deepEqual(unused, [], "messages nobody uses");
});
