// Fills the page's text from _locales: a data-i18n attribute (a message key) sets textContent,
// data-i18n-attr ("attr:KEY,attr:KEY") sets attributes (aria-label, placeholder, title).

export function localize(root, getMessage) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    const text = getMessage(el.dataset.i18n);
    if (text) el.textContent = text;
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      const text = getMessage(key);
      if (attr && text) el.setAttribute(attr, text);
    }
  }
  // The language the messages are in (not the UI locale, which may have no translation).
  const lang = getMessage("htmlLang");
  if (lang) root.documentElement.lang = lang;
}

/** Relative time for activity lists ("2 min ago") in the UI language. */
export function timeAgo(ms, now, lang) {
  const seconds = Math.round((ms - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(lang || undefined, { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
