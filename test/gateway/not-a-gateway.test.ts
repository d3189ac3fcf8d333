/**
 * A `--server` that answers but is not a gateway (a web server, a registry, a wrong path) is said
 * as such, with its own exit code, by every binary that fetches the CA a token pins: not
 * "unreachable", which scripts and operators read as "try again later". A proxy's 502-504 (no
 * gateway up behind it) is the one answer that stays "unreachable". The server here is a real
 * HTTPS server on loopback that answers 404, 503, or a page that is no certificate.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { createCa, issueServerCert } from "../../gateway/pki/ca.ts";
import { tempDir } from "../harness/tmp.ts";

const BUN = process.execPath;
const ROOT = join(import.meta.dir, "..", "..");
let server: ReturnType<typeof Bun.serve>;
let answer: "404" | "page" | "503" = "404";
let url: string;
let token: string;

beforeAll(async () => {
  const ca = await createCa("main");
  const tls = await issueServerCert(ca, ["127.0.0.1"]);
  token = `s3cret.${ca.fingerprint}`;
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: tls.certPem, key: tls.keyPem },
    fetch: () =>
      answer === "page"
        ? new Response("<html><body>Welcome</body></html>", { headers: { "content-type": "text/html" } })
        : new Response(answer === "404" ? "not found" : "no server is available", { status: Number(answer) }),
  });
  url = `https://127.0.0.1:${server.port}`;
});

afterAll(() => server?.stop(true));

async function run(bin: string, args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([BUN, join(ROOT, bin, "main.ts"), ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  return { code, err };
}

describe("a --server that answers but is no gateway", () => {
  for (const [mode, what] of [
    ["404", "HTTP 404"],
    ["page", "with no PEM certificate"],
  ] as const) {
    const says = () => `${url} does not look like a gateway: ${url}/ca.pem answered ${what}; check the URL (a gateway serves its CA certificate there)`;

    test(`the gateway admin CLI exits 5, as for a CA the token does not pin (${mode})`, async () => {
      answer = mode;
      const r = await run("gateway", ["devices", "list", "--server", url, "--token", token]);
      expect({ code: r.code, err: r.err }).toEqual({ code: 5, err: expect.stringContaining(says()) });
    });

    test(`fioup register exits 32 (registration failed), not 31 (unreachable), and writes nothing (${mode})`, async () => {
      answer = mode;
      const root = await tempDir("not-a-gateway-");
      const r = await run("fioup", ["register", "--server", url, "--token", token], { FIOUP_ROOT: root });
      expect({ code: r.code, err: r.err }).toEqual({ code: 32, err: expect.stringContaining(`Cannot register: ${says()}`) });
      expect(readdirSync(root)).toEqual([]);
    });
  }

  test("a 503 (a proxy with no gateway up behind it) is 'unreachable', worth trying again: exit 4 and fioup 31", async () => {
    answer = "503";
    const says = `Cannot fetch ${url}/ca.pem: it answered HTTP 503: a proxy in front with no gateway answering behind it? Try again once the gateway is up`;
    const admin = await run("gateway", ["devices", "list", "--server", url, "--token", token]);
    expect({ code: admin.code, err: admin.err }).toEqual({ code: 4, err: expect.stringContaining(says) });
    const root = await tempDir("not-a-gateway-");
    const reg = await run("fioup", ["register", "--server", url, "--token", token], { FIOUP_ROOT: root });
    expect({ code: reg.code, err: reg.err }).toEqual({ code: 31, err: expect.stringContaining(says) });
    expect(readdirSync(root)).toEqual([]);
  });
});
