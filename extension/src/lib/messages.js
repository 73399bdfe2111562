// Message routing between the UI pages and the service worker. The popup and options page only
// send intents ({type, ...}); the service worker owns state and answers {ok, value} or
// {ok: false, error, kind}. Unknown intents and thrown errors become answers, never crashes.

/** Build an async dispatcher from {intent: handler(message, sender)}. */
export function createRouter(handlers) {
  return async function route(message, sender) {
    if (!message || typeof message !== "object" || typeof message.type !== "string") {
      return { ok: false, error: "malformed message", kind: "bad-intent" };
    }
    const handler = Object.prototype.hasOwnProperty.call(handlers, message.type) ? handlers[message.type] : null;
    if (!handler) return { ok: false, error: `unknown intent "${message.type}"`, kind: "bad-intent" };
    try {
      return { ok: true, value: await handler(message, sender) };
    } catch (err) {
      return { ok: false, error: String((err && err.message) || err), kind: (err && err.kind) || "error", status: err && err.status };
    }
  };
}

/** UI side: send an intent and unwrap the answer; rejects with the service worker's error. */
export async function send(runtime, type, fields = {}) {
  const answer = await runtime.sendMessage({ type, ...fields });
  if (!answer) throw new Error("the extension's service worker did not answer");
  if (!answer.ok) {
    const err = new Error(answer.error);
    err.kind = answer.kind;
    err.status = answer.status;
    throw err;
  }
  return answer.value;
}
