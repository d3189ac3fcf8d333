/**
 * publish recognises the gateway's registry (its token and CA, manifests it reuses put again so
 * `gateway registry gc --untargeted` keeps them) under any spelling of the --server host, and
 * only the server's host: taking another registry for the gateway would send it the admin token.
 */
import { describe, expect, test } from "bun:test";
import { isServerHost } from "../../gateway/publish/publish.ts";

describe("isServerHost", () => {
  test("another spelling of the server's host and port is the gateway's registry", () => {
    expect(isServerHost("gw.example", new URL("https://gw.example"))).toBe(true);
    expect(isServerHost("gw.example:443", new URL("https://gw.example"))).toBe(true);
    expect(isServerHost("gw.example", new URL("https://gw.example:443/"))).toBe(true);
    expect(isServerHost("gw.example:443", new URL("https://GW.Example."))).toBe(true);
    expect(isServerHost("gw.example:80", new URL("http://gw.example"))).toBe(true);
    expect(isServerHost("127.1:8443", new URL("https://127.0.0.1:8443"))).toBe(true);
    expect(isServerHost("[0:0::1]:8443", new URL("https://[::1]:8443"))).toBe(true);
  });

  test("another host, another port, or not a host at all is not", () => {
    expect(isServerHost("gw.example:8443", new URL("https://gw.example"))).toBe(false);
    expect(isServerHost("gw.example:443", new URL("http://gw.example"))).toBe(false);
    expect(isServerHost("gw.example.evil", new URL("https://gw.example"))).toBe(false);
    expect(isServerHost("registry.example", new URL("https://gw.example"))).toBe(false);
    expect(isServerHost("gw.example/v2", new URL("https://gw.example"))).toBe(false);
    expect(isServerHost("https://gw.example", new URL("https://gw.example"))).toBe(false);
  });
});
