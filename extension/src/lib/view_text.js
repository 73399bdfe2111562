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

export function caText(t, status) {
  if (!status || !status.caFingerprint) return t("caUnknown");
  const short = status.caFingerprint.replace(/^sha256:/i, "").slice(0, 23);
  if (status.caTrusted === false) return t("caNotTrusted", [short]);
  return t("caFingerprint", [short]);
}
