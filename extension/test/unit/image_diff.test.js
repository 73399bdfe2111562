import assert from "node:assert/strict";
import { test } from "node:test";
import { diffImages } from "../../src/lib/image_diff.js";

test("identical images: infinite PSNR, no change, black difference", () => {
  const a = new Uint8ClampedArray([10, 20, 30, 255, 40, 50, 60, 255]);
  const s = diffImages(a, a.slice());
  assert.equal(s.psnr, Infinity);
  assert.equal(s.maxAbs, 0);
  assert.equal(s.changedShare, 0);
  assert.deepEqual([...s.diff], [0, 0, 0, 255, 0, 0, 0, 255]);
});

test("numbers match a hand computation and the difference is amplified", () => {
  const a = new Uint8ClampedArray([100, 100, 100, 255, 0, 0, 0, 255]);
  const b = new Uint8ClampedArray([103, 100, 100, 0, 0, 0, 0, 255]);
  const s = diffImages(a, b, 10);
  // One channel of six differs by 3: MSE = 9 / 6 = 1.5.
  assert.ok(Math.abs(s.psnr - 10 * Math.log10((255 * 255) / 1.5)) < 1e-9);
  assert.equal(s.meanAbs, 0.5);
  assert.equal(s.maxAbs, 3);
  assert.equal(s.changedShare, 0.5);
  assert.equal(s.diff[0], 30);
  assert.equal(s.diff[3], 255, "alpha differences are ignored and the diff is opaque");
});

test("size mismatch is a clear error", () => {
  assert.throws(() => diffImages(new Uint8ClampedArray(8), new Uint8ClampedArray(4)), /size/);
});
