import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeError } from "../cli/command.ts";
import { CaFetchError, caFingerprint, CaPinMismatchError, fetchPinnedCa, InvalidTokenError, parsePinnedToken } from "./pin.ts";

const dir = mkdtempSync(join(tmpdir(), "pin-test-"));
let server: ReturnType<typeof Bun.serve>;
let caPem: string;
let otherCaPem: string;

function openssl(...args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
}

beforeAll(() => {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test CA", "-days", "2");
  openssl("req", "-x509", ...ec, "-keyout", "other.key", "-out", "other.pem", "-subj", "/CN=other CA", "-days", "2");
  openssl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  Bun.write(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf");
  caPem = readFileSync(join(dir, "ca.pem"), "utf8");
  otherCaPem = readFileSync(join(dir, "other.pem"), "utf8");
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: readFileSync(join(dir, "server.pem"), "utf8"), key: readFileSync(join(dir, "server.key"), "utf8") },
    fetch: (req) => (["/ca.pem", "/ota/ca.pem"].includes(new URL(req.url).pathname) ? new Response(caPem) : new Response("hello")),
  });
});

afterAll(() => {
  server?.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

describe("parsePinnedToken", () => {
  test("splits at the last dot", () => {
    const pin = "a".repeat(64);
    expect(parsePinnedToken(`se.cr.et.${pin}`)).toEqual({ secret: "se.cr.et", pin });
  });
  test("rejects a token without a pin", () => {
    expect(() => parsePinnedToken("secret")).toThrow(InvalidTokenError);
    expect(() => parsePinnedToken(`.${"a".repeat(64)}`)).toThrow(InvalidTokenError);
    expect(() => parsePinnedToken("secret.abc")).toThrow(InvalidTokenError);
  });
});

describe("fetchPinnedCa", () => {
  test("returns the CA when the pin matches, and that CA then verifies the server", async () => {
    const url = `https://127.0.0.1:${server.port}`;
    const ca = await fetchPinnedCa(url, `s3cret.${caFingerprint(caPem)}`);
    expect(caFingerprint(ca)).toBe(caFingerprint(caPem));
    const res = await fetch(`${url}/x`, { tls: { ca } });
    expect(await res.text()).toBe("hello");
  });

  test("a server URL with a path (a gateway behind a proxy under /ota) has its CA under that path, as every other request", async () => {
    const seen: string[] = [];
    const proxy = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: readFileSync(join(dir, "server.pem"), "utf8"), key: readFileSync(join(dir, "server.key"), "utf8") },
      fetch: (req) => (seen.push(new URL(req.url).pathname), new URL(req.url).pathname === "/ota/ca.pem" ? new Response(caPem) : new Response("not here", { status: 404 })),
    });
    try {
      for (const server of [`https://127.0.0.1:${proxy.port}/ota`, `https://127.0.0.1:${proxy.port}/ota/`]) {
        expect(caFingerprint(await fetchPinnedCa(server, `s3cret.${caFingerprint(caPem)}`))).toBe(caFingerprint(caPem));
      }
      expect(seen).toEqual(["/ota/ca.pem", "/ota/ca.pem"]);
    } finally {
      proxy.stop(true);
    }
  });

  test("refuses a CA whose fingerprint differs from the pin", async () => {
    const url = `https://127.0.0.1:${server.port}`;
    await expect(fetchPinnedCa(url, `s3cret.${caFingerprint(otherCaPem)}`)).rejects.toThrow(CaPinMismatchError);
  });

  test("a server that is not there is a fetch error", async () => {
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const port = probe.port;
    probe.stop(true);
    await expect(fetchPinnedCa(`https://127.0.0.1:${port}`, `s.${"a".repeat(64)}`)).rejects.toThrow(CaFetchError);
    // Said in words, once: not Bun's "ECONNREFUSED: Unable to connect. Is the computer able to access the url?"
    const err = await fetchPinnedCa(`https://127.0.0.1:${port}`, `s.${"a".repeat(64)}`).catch((e) => e);
    expect(describeError(err)).toBe(`Cannot fetch https://127.0.0.1:${port}/ca.pem: connection refused (is it running at that address?)`);
  });
});
