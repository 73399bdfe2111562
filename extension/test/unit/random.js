// A small seeded PRNG for property-style tests: reproducible, so a failure names its seed.
export function rng(seed) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const pick = (list) => list[int(list.length)];
  return { next, int, pick };
}

const LABELS = ["www", "a", "upload", "s3", "eu-west-1", "host", "bsky", "pixiv", "example", "xn--art-9na", "cdn", "x", "com", "net", "network", "app"];

/** A random host name of 1-4 labels drawn from a small alphabet, so matches happen often. */
export function randomHost(r) {
  const n = 1 + r.int(4);
  return Array.from({ length: n }, () => r.pick(LABELS)).join(".");
}

/** A random host pattern: plain domain, "*.domain" or a glob with a "*" inside. */
export function randomPattern(r) {
  const host = randomHost(r);
  const kind = r.int(3);
  if (kind === 0) return host;
  if (kind === 1) return "*." + host;
  const labels = host.split(".");
  labels[r.int(labels.length)] = "*";
  return labels.join(".");
}
