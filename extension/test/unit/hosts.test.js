import assert from "node:assert/strict";
import { test } from "node:test";
import {
  compilePattern,
  customSiteHost,
  hostMatches,
  hostOfUrl,
  normalizeHost,
  originPatterns,
  siteForHost,
} from "../../src/lib/hosts.js";

test("normalizeHost lower-cases, strips port, trailing dot and brackets, rejects junk", () => {
  assert.equal(normalizeHost("WWW.DeviantArt.com."), "www.deviantart.com");
  assert.equal(normalizeHost("example.com:8443"), "example.com");
  assert.equal(normalizeHost("[::1]:8080"), "::1");
  assert.equal(normalizeHost('evil"host'), "");
  assert.equal(normalizeHost("a b"), "");
  assert.equal(normalizeHost(42), "");
});

test("hostOfUrl only accepts http(s) URLs", () => {
  assert.equal(hostOfUrl("https://www.pixiv.net/upload"), "www.pixiv.net");
  assert.equal(hostOfUrl("chrome://extensions"), "");
  assert.equal(hostOfUrl("about:blank"), "");
  assert.equal(hostOfUrl("not a url"), "");
});

test("a plain pattern covers the domain and its subdomains, not look-alikes", () => {
  assert.ok(hostMatches("tumblr.com", ["tumblr.com"]));
  assert.ok(hostMatches("www.tumblr.com", ["tumblr.com"]));
  assert.ok(hostMatches("a.b.tumblr.com", ["tumblr.com"]));
  assert.ok(!hostMatches("nottumblr.com", ["tumblr.com"]));
  assert.ok(!hostMatches("tumblr.com.evil.net", ["tumblr.com"]));
});

test("*.domain covers only subdomains; inner globs match any run of characters", () => {
  assert.ok(hostMatches("morel.us-east.host.bsky.network", ["*.host.bsky.network"]));
  assert.ok(!hostMatches("host.bsky.network", ["*.host.bsky.network"]));
  assert.ok(hostMatches("s3.eu-west-1.amazonaws.com", ["s3.*.amazonaws.com"]));
  assert.ok(!hostMatches("s3.amazonaws.com.evil", ["s3.*.amazonaws.com"]));
  assert.ok(hostMatches("upload.x.com", [".x.com"]), "a leading dot means subdomains");
});

test("patterns that would match everything are ignored", () => {
  assert.equal(compilePattern("*"), null);
  assert.equal(compilePattern("**"), null);
  assert.equal(compilePattern("*.*"), null);
  assert.equal(compilePattern(""), null);
  assert.ok(!hostMatches("anything.com", ["*", ""]));
});

test("siteForHost prefers the most specific pattern", () => {
  const sites = [
    { id: "x", hosts: ["x.com"] },
    { id: "x-upload", hosts: ["upload.x.com"] },
  ];
  assert.equal(siteForHost("upload.x.com", sites).id, "x-upload");
  assert.equal(siteForHost("www.x.com", sites).id, "x");
  assert.equal(siteForHost("y.com", sites), null);
  assert.equal(siteForHost("upload.x.com", [{ id: "s", hosts: [], upload_hosts: ["upload.x.com"] }]).id, "s");
});

test("customSiteHost drops www only", () => {
  assert.equal(customSiteHost("www.my-art.example"), "my-art.example");
  assert.equal(customSiteHost("shop.my-art.example"), "shop.my-art.example");
});

test("originPatterns covers what the routing covers, widening globs to their domain", () => {
  assert.deepEqual(originPatterns(["tumblr.com"]), ["*://*.tumblr.com/*", "*://tumblr.com/*"]);
  assert.deepEqual(originPatterns(["*.host.bsky.network"]), ["*://*.host.bsky.network/*"]);
  assert.deepEqual(originPatterns(["s3.*.amazonaws.com"]), ["*://*.amazonaws.com/*"]);
  assert.deepEqual(originPatterns(["*", "bad host"]), []);
});
