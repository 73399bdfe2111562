import assert from "node:assert/strict";
import { test } from "node:test";
import { refusalText } from "../../src/lib/view_text.js";
import { fakeChrome } from "./fake_browser.js";

const tFor = (lang) => {
  const ext = fakeChrome({ lang });
  return (key, subs) => ext.i18n.getMessage(key, subs) || key; // as the pages do
};

test("a known code gets the text of the user's language", () => {
  const event = { outcome: "refused", code: "signed-payload", reason: "the payload is signed by the site" };
  const es = refusalText(tFor("es"), event);
  assert.equal(es.known, true);
  assert.match(es.text, /^El sitio firma esta subida/);
  assert.match(refusalText(tFor("en"), event).text, /^The site signs this upload/);
});

test("an unknown, missing or malformed code falls back to the backend's words", () => {
  for (const code of ["new-in-a-later-backend", "", undefined, "__proto__", "x y", "Corrupt-Image", "toString"]) {
    const r = refusalText(tFor("es"), { outcome: "refused", code, reason: "backend words" });
    assert.deepEqual(r, { text: "backend words", known: false }, String(code));
  }
  assert.deepEqual(refusalText(tFor("en"), { code: "nope" }), { text: "", known: false });
});
