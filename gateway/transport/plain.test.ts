import { describe, expect, test } from "bun:test";
import { TrustedProxies } from "../trusted-proxies.ts";
import { InvalidProxyListenError, listenPlain, parseProxyListen } from "./plain.ts";

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

test("listenPlain refuses a TCP address without trusted proxies", async () => {
  const opts = { trustedProxies: new TrustedProxies(undefined), forwardedCerts: {} as never, fetch: () => new Response() };
  await expect(listenPlain({ ...opts, address: { host: "127.0.0.1", port: 0 } })).rejects.toThrow(InvalidProxyListenError);
});
