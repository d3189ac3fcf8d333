import { describe, expect, test } from "bun:test";
import { gatewayRegistryClients } from "./registry-clients.ts";

describe("gatewayRegistryClients", () => {
  const gw = { serverHost: "10.0.0.5:8443", publicUrl: new URL("https://ota.example"), token: "t" };

  test("the public host the targets name is reached at the tool's address, one client for both", () => {
    const clientFor = gatewayRegistryClients(gw, () => ({}));
    expect(clientFor("ota.example").baseUrl).toBe("https://10.0.0.5:8443");
    expect(clientFor("ota.example")).toBe(clientFor("10.0.0.5:8443"));
    expect(clientFor("registry.example").baseUrl).toBe("https://registry.example");
  });

  test("another address of the gateway (publish's --server while it pushes through the public host) is reached as written; plain HTTP where said", () => {
    const clientFor = gatewayRegistryClients({ ...gw, serverHost: "ota.example:443", alsoAt: ["10.0.0.5:8080"], plainHttp: new Set(["10.0.0.5:8080"]) }, (host) => (host === "mirror.local:5000" ? { scheme: "http" } : {}));
    expect(clientFor("ota.example").baseUrl).toBe("https://ota.example:443");
    expect(clientFor("10.0.0.5:8080").baseUrl).toBe("http://10.0.0.5:8080");
    expect(clientFor("10.0.0.5:8080")).not.toBe(clientFor("ota.example"));
    expect(clientFor("mirror.local:5000").baseUrl).toBe("http://mirror.local:5000"); // the other hosts' policy
  });
});
