// Host patterns, as sites list them: "example.com" covers the domain and its subdomains,
// "*.example.com" only the subdomains, any other "*" is a glob ("s3.*.amazonaws.com").
// The same rules are compiled into the PAC script (pac.js); tests check both agree.

/** Lower-case a host name, drop a trailing dot, brackets and any port. Returns "" for junk. */
export function normalizeHost(host) {
  if (typeof host !== "string") return "";
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end > 0 ? h.slice(1, end) : "";
  }
  const colon = h.indexOf(":");
  if (colon >= 0 && h.indexOf(":", colon + 1) < 0) h = h.slice(0, colon);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return /^[a-z0-9.*_-]+$/.test(h) || h.includes(":") ? h : "";
}

/** The host of a URL string, or "" when the URL has none (chrome://, about:, junk). */
export function hostOfUrl(url) {
  try {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") return "";
    return normalizeHost(u.hostname);
  } catch {
    return "";
  }
}

/**
 * Compile a site's host pattern into a matcher description.
 * Returns {kind: "domain", value} | {kind: "subdomains", value} | {kind: "glob", source} | null.
 */
export function compilePattern(pattern) {
  const p = normalizeHost(pattern.replace(/^\.+/, "*."));
  // Nothing but wildcards and dots ("*", "**", "*.*") would route every site: refuse it.
  if (!p || !/[a-z0-9]/.test(p)) return null;
  if (!p.includes("*")) return { kind: "domain", value: p };
  if (p.startsWith("*.") && !p.slice(2).includes("*")) return { kind: "subdomains", value: p.slice(2) };
  const source =
    "^" + p.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, "\\$&")).join(".*") + "$";
  return { kind: "glob", source };
}

/** Whether a normalised host matches one compiled pattern. */
export function matchCompiled(host, compiled) {
  if (!host || !compiled) return false;
  switch (compiled.kind) {
    case "domain":
      return host === compiled.value || host.endsWith("." + compiled.value);
    case "subdomains":
      return host.endsWith("." + compiled.value);
    case "glob":
      return new RegExp(compiled.source).test(host);
    default:
      return false;
  }
}

/** Whether `host` is covered by any of `patterns`. */
export function hostMatches(host, patterns) {
  const h = normalizeHost(host);
  return patterns.some((p) => matchCompiled(h, compilePattern(p)));
}

/** All host patterns of a site (page hosts and upload hosts), de-duplicated. */
export function siteHosts(site) {
  const hosts = [...(site.hosts || []), ...(site.upload_hosts || [])];
  return [...new Set(hosts.filter((h) => typeof h === "string" && h.trim()))];
}

/**
 * The site a host belongs to. When several sites match, the most specific pattern wins
 * (an exact "upload.example.com" beats "example.com"), so custom sites can refine built-ins.
 */
export function siteForHost(host, sites) {
  const h = normalizeHost(host);
  if (!h) return null;
  let best = null;
  let bestScore = -1;
  for (const site of sites) {
    for (const pattern of siteHosts(site)) {
      const compiled = compilePattern(pattern);
      if (!matchCompiled(h, compiled)) continue;
      const score = (compiled.value || compiled.source).length + (compiled.kind === "domain" ? 1 : 0);
      if (score > bestScore) {
        best = site;
        bestScore = score;
      }
    }
  }
  return best;
}

/** The registrable-looking part of a host for a new custom site ("www.foo.com" -> "foo.com"). */
export function customSiteHost(host) {
  const h = normalizeHost(host);
  return h.startsWith("www.") ? h.slice(4) : h;
}

/**
 * Match patterns ("*://*.example.com/*") covering host patterns, for permission requests: Firefox
 * only lets proxy.onRequest see requests to hosts the extension may access. A glob is widened to
 * the domain after its last "*" (match patterns cannot express "s3.*.amazonaws.com").
 */
export function originPatterns(hostPatterns) {
  const out = new Set();
  for (const pattern of hostPatterns) {
    const c = compilePattern(pattern);
    if (!c) continue;
    if (c.kind === "domain") {
      out.add(`*://${c.value}/*`);
      out.add(`*://*.${c.value}/*`);
    } else if (c.kind === "subdomains") {
      out.add(`*://*.${c.value}/*`);
    } else {
      const p = normalizeHost(pattern);
      const tail = p.slice(p.lastIndexOf("*") + 1).replace(/^[.-]+/, "");
      if (tail.includes(".")) out.add(`*://*.${tail}/*`);
    }
  }
  return [...out].sort();
}
