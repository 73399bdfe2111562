// The extension API object: Firefox's promise-based `browser`, else Chromium's `chrome` (MV3
// chrome.* APIs return promises too).
export const ext = globalThis.browser ?? globalThis.chrome;
