import assert from "node:assert/strict";
import { test } from "node:test";
import { createRouter, send } from "../../src/lib/messages.js";

test("the router dispatches intents and turns every failure into an answer", async () => {
  const route = createRouter({
    echo: async (m) => m.value,
    boom: async () => {
      const err = new Error("backend said no");
      err.kind = "http";
      err.status = 409;
      throw err;
    },
  });
  assert.deepEqual(await route({ type: "echo", value: 3 }), { ok: true, value: 3 });
  assert.deepEqual(await route({ type: "boom" }), { ok: false, error: "backend said no", kind: "http", status: 409 });
  assert.equal((await route({ type: "toString" })).kind, "bad-intent", "prototype names are not intents");
  assert.equal((await route({ type: "nope" })).kind, "bad-intent");
  assert.equal((await route(null)).kind, "bad-intent");
  assert.equal((await route({ type: 5 })).kind, "bad-intent");
});

test("send unwraps answers and rethrows errors with their kind", async () => {
  const runtime = { sendMessage: async (m) => (m.type === "ok" ? { ok: true, value: m.x } : { ok: false, error: "bad", kind: "network" }) };
  assert.equal(await send(runtime, "ok", { x: 1 }), 1);
  await assert.rejects(send(runtime, "ko"), (err) => err.message === "bad" && err.kind === "network");
  await assert.rejects(send({ sendMessage: async () => undefined }, "x"), /did not answer/);
});
