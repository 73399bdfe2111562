// The real backend for the end-to-end test: `sfumato serve` from the project's .venv on free
// ports with a temporary data dir and a tiny test model, plus `sfumato pair` for a code.

import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..", "..", "..");
const VENV = process.env.SFUMATO_VENV || path.join(REPO, ".venv");
const PYTHON = path.join(VENV, "bin", "python");
const SFUMATO = path.join(VENV, "bin", "sfumato");

export function backendAvailable() {
  return existsSync(SFUMATO) && existsSync(PYTHON);
}

/** A port nobody listens on right now (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Build the tiny model and the test images (support/make_fixtures.py) into `dir`. */
export async function buildFixtures(dir) {
  const { stdout } = await run(PYTHON, [path.join(HERE, "make_fixtures.py"), dir], {
    cwd: REPO,
    env: { ...process.env, PYTHONPATH: REPO },
  });
  return JSON.parse(stdout);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Start `sfumato serve`; resolves when the control API answers. Every upstream connection of the
 * proxy goes to `upstream` (the local art site) through support/redirect_upstream.py.
 */
export async function startServe({ dataDir, model, upstream }) {
  const proxyPort = await freePort();
  const apiPort = await freePort();
  const args = [
    "serve", "--data-dir", dataDir, "--proxy-port", String(proxyPort), "--api-port", String(apiPort),
    "-s", path.join(HERE, "redirect_upstream.py"),
    "--set", `sfumato_model=${model}`,
    "--set", "ssl_insecure=true", // the art site's certificate is a throwaway self-signed one
    "--grace", "1",
  ];
  const child = spawn(SFUMATO, args, {
    cwd: REPO,
    env: { ...process.env, SFUMATO_E2E_UPSTREAM: upstream },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const api = `http://127.0.0.1:${apiPort}`;
  const deadline = Date.now() + 60000;
  let alive = true;
  exited.then(() => (alive = false));
  for (;;) {
    if (!alive) throw new Error(`sfumato serve exited before answering:\n${log}`);
    try {
      const res = await fetch(`${api}/v1/ca.pem`);
      if (res.ok) {
        const caPem = await res.text();
        return {
          api, proxyPort, apiPort, caPem, child,
          log: () => log,
          async stop() {
            if (alive) child.kill("SIGTERM");
            const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
            const result = await exited;
            clearTimeout(timer);
            return result;
          },
        };
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`sfumato serve did not answer within 60 s:\n${log}`);
    }
    await sleep(200);
  }
}

/** A fresh one-time pairing code, as a user gets it from `sfumato pair`. */
export async function pairingCode(dataDir) {
  const { stdout } = await run(SFUMATO, ["pair", "--data-dir", dataDir, "--json"], { cwd: REPO });
  return JSON.parse(stdout).code;
}
