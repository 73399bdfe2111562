// Numbers and the amplified difference image for the before/after preview. Works on RGBA pixel
// arrays (canvas ImageData.data) so it is testable without a browser.

/**
 * Compare two RGBA images of the same size. Returns the amplified difference image (RGBA, opaque)
 * and PSNR (dB, RGB channels, Infinity when identical), mean and max absolute channel difference
 * (0-255) and the share of pixels that changed at all.
 */
export function diffImages(a, b, amplify = 10) {
  if (a.length !== b.length || a.length % 4 !== 0) {
    throw new RangeError("the protected image does not have the original's size");
  }
  const out = new Uint8ClampedArray(a.length);
  let sq = 0;
  let abs = 0;
  let max = 0;
  let changed = 0;
  const pixels = a.length / 4;
  for (let i = 0; i < a.length; i += 4) {
    let pixelChanged = false;
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(a[i + c] - b[i + c]);
      sq += d * d;
      abs += d;
      if (d > max) max = d;
      if (d) pixelChanged = true;
      out[i + c] = d * amplify;
    }
    out[i + 3] = 255;
    if (pixelChanged) changed++;
  }
  const mse = pixels ? sq / (pixels * 3) : 0;
  return {
    diff: out,
    psnr: mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse),
    meanAbs: pixels ? abs / (pixels * 3) : 0,
    maxAbs: max,
    changedShare: pixels ? changed / pixels : 0,
  };
}
