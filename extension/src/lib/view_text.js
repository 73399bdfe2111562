// Shared wording of states for the popup and the options page (keys in _locales).

export function connectionText(t, view) {
  const c = view.connection || {};
  switch (c.state) {
    case "connected":
      return { text: t("conn_connected"), tone: "ok" };
    case "unpaired":
      return { text: t("conn_unpaired"), tone: "muted" };
    case "unreachable":
      return { text: t("conn_unreachable"), tone: "bad" };
    case "unauthorized":
      return { text: t("conn_unauthorized"), tone: "bad" };
    default:
      return { text: t("conn_error", [c.detail || "?"]), tone: "bad" };
  }
}

export function outcomeText(t, event) {
  const key = { protected: "outcome_protected", refused: "outcome_refused", passed: "outcome_passed" }[event.outcome];
  return key ? t(key) : event.outcome;
}

/**
 * Why an upload was refused, in the user's language: the text for its stable code (the
 * backend's X-Sfumato-Error value, also in /v1/activity); the backend's own English words only
 * for a code this version of the extension does not know. `t` returns "" or the key when a
 * message is missing.
 */
export function refusalText(t, event) {
  const code = /^[a-z][a-z-]*$/.test(event.code || "") ? event.code.replace(/-/g, "_") : "";
  const text = code ? t(`refusal_${code}`) : "";
  const known = Boolean(text) && text !== `refusal_${code}`;
  return { text: known ? text : event.reason || "", known };
}

export function caText(t, status) {
  if (!status || !status.caFingerprint) return t("caUnknown");
  const short = status.caFingerprint.replace(/^sha256:/i, "").slice(0, 23);
  if (status.caTrusted === false) return t("caNotTrusted", [short]);
  return t("caFingerprint", [short]);
}
