import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGateway } from "../../test/harness/gateway.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import { anEvent } from "../../test/gateway/_fixture.ts";
import { registerDevice } from "../../test/gateway/_register.ts";
import { x509 } from "../../lib/x509/eager.ts";
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

test("a device revoked after its forwarded certificate was verified (and cached) is refused on the plain listener at once", async () => {
  const sock = join(await tempDir("plain-revoke-"), "proxy.sock");
  const gw = await startGateway({ args: ["--client-cert-header", "x-ssl-client-cert", "--proxy-listen", `unix:${sock}`] });
  try {
    const dev = await registerDevice(gw.url, gw.adminToken, gw.caPem);
    // As HAProxy forwards it: one line of base64 DER.
    const cert = Buffer.from(new x509.X509Certificate(dev.cert).rawData).toString("base64");
    const get = () => fetch("http://localhost/repo/timestamp.json", { unix: sock, headers: { "x-ssl-client-cert": cert } } as RequestInit);
    let n = 0;
    const postEvent = () =>
      fetch("http://localhost/events", {
        unix: sock,
        method: "POST",
        headers: { "x-ssl-client-cert": cert, "content-type": "application/json" },
        body: JSON.stringify([anEvent(`revoke-${n++}`)]),
      } as RequestInit);
    expect((await get()).status).toBe(200);
    expect((await postEvent()).status).toBe(200);
    expect((await gw.adminFetch(`/admin/devices/${dev.uuid}/revoke`, { method: "POST" })).status).toBeLessThan(300);
    // The certificate is still the listener's cached verdict; the device check behind it is not cached past a revocation.
    expect((await get()).status).toBe(403);
    expect((await postEvent()).status).toBe(403);
  } finally {
    await gw.stop();
  }
}, 60_000);
