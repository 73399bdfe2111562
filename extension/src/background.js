// Service worker (Chromium) / background script (Firefox): one Service owns all state.
import { ext } from "./lib/browser_api.js";
import { Service } from "./lib/service.js";

const service = new Service(ext);
service.start();
// Exposed for debugging from the worker's console and for the end-to-end test.
globalThis.sfumato = service;
