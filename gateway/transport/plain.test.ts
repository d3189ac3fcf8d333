import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TrustedProxies } from "../trusted-proxies.ts";
import { checkProxyListen, InvalidProxyListenError, listenPlain, parseProxyListen } from "./plain.ts";

describe("parseProxyListen", () => {
  test("reads HOST:PORT, [IPv6]:PORT and unix:/path", () => {
    expect(parseProxyListen("10.0.0.11:8080")).toEqual({ host: "10.0.0.11", port: 8080 });
    expect(parseProxyListen("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseProxyListen("unix:/run/gateway/proxy.sock")).toEqual({ unix: "/run/gateway/proxy.sock" });
  });

  test("refuses a missing port, a port past 65535 and a relative socket path", () => {
    for (const bad of ["10.0.0.11", ":8080", "host:70000", "unix:proxy.sock", "unix:"]) expect(() => parseProxyListen(bad)).toThrow(InvalidProxyListenError);
  });
});

const noProxies = { trustedProxies: new TrustedProxies(undefined), forwardedCerts: {} as never, fetch: () => new Response() };

test("listenPlain refuses a TCP address without trusted proxies (the check gateway serve makes first)", async () => {
  expect(() => checkProxyListen({ host: "127.0.0.1", port: 8080 }, noProxies.trustedProxies)).toThrow(InvalidProxyListenError);
  expect(() => checkProxyListen({ unix: "/run/gateway/proxy.sock" }, noProxies.trustedProxies)).not.toThrow();
  await expect(listenPlain({ ...noProxies, address: { host: "127.0.0.1", port: 0 } })).rejects.toThrow(InvalidProxyListenError);
});

test("the unix socket is made 0660 (owner and group) even under umask 0, or the mode asked for", async () => {
  const dir = mkdtempSync(join(tmpdir(), "plain-mode-"));
  const umask = process.umask(0);
  try {
    for (const [socketMode, want] of [[undefined, "660"], [0o600, "600"]] as const) {
      const path = join(dir, `${want}.sock`);
      const l = await listenPlain({ ...noProxies, address: { unix: path }, ...(socketMode ? { socketMode } : {}) });
      try {
        expect((statSync(path).mode & 0o777).toString(8)).toBe(want);
      } finally {
        await l.close(0);
      }
    }
  } finally {
    process.umask(umask);
    rmSync(dir, { recursive: true, force: true });
  }
});
