// Firefox routes with proxy.onRequest, which only sees requests to hosts the extension may access,
// so enabling a site there asks for access to its hosts. Chromium's PAC needs no such grant.
// Call from a click handler before any other await: the request needs the user's gesture.
import { originPatterns } from "./hosts.js";

export async function ensureSiteAccess(ext, hosts) {
  if (!(ext.proxy && ext.proxy.onRequest)) return true;
  const origins = originPatterns(hosts);
  if (!origins.length) return true;
  try {
    return await ext.permissions.request({ origins });
  } catch {
    return false; // the caller says which site could not be allowed
  }
}
