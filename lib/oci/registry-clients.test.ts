import { afterAll, describe, expect, test } from "bun:test";
import { gatewayRegistryClients } from "./registry-clients.ts";

describe("gatewayRegistryClients", () => {
  const gw = { serverHost: "10.0.0.5:8443", publicUrl: new URL("https://ota.example"), token: "t", realmFor: () => false };

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

  describe("the gateway as another registry's token realm", () => {
    // The gateway's /token (the realm) records who asked for what; a registry answers every request
    // 401 with a challenge naming that realm and asking for more than a pull, and records what it is sent.
    const asked: { auth: string | null; scopes: string[] }[] = [];
    const GATEWAY_BASIC = `Basic ${Buffer.from("token:GATEWAY-TOKEN").toString("base64")}`;
    const realm = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => {
        const url = new URL(req.url);
        const auth = req.headers.get("authorization");
        asked.push({ auth, scopes: url.searchParams.getAll("scope") });
        // As the gateway: a token only for a caller with credentials.
        return auth === GATEWAY_BASIC ? Response.json({ token: "MINTED", expires_in: 300 }) : Response.json({ errors: [{ code: "UNAUTHORIZED" }] }, { status: 401 });
      },
    });
    const sent: (string | null)[] = [];
    const registry = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => {
        const auth = req.headers.get("authorization");
        sent.push(auth);
        if (auth === "Bearer MINTED") return new Response(null, { status: 404 });
        return new Response(null, {
          status: 401,
          headers: { "www-authenticate": `Bearer realm="http://127.0.0.1:${realm.port}/token",service="gateway",scope="repository:main/app:pull,push,delete"` },
        });
      },
    });
    afterAll(() => {
      realm.stop(true);
      registry.stop(true);
    });
    const host = `127.0.0.1:${registry.port}`;
    const reach = (realmFor: (h: string) => boolean) =>
      gatewayRegistryClients({ serverHost: "10.0.0.5:8443", publicUrl: new URL(`http://127.0.0.1:${realm.port}`), token: "GATEWAY-TOKEN", realmFor }, () => ({ scheme: "http" }));

    test("a registry the tool does not know as the gateway's external one is never handed a token minted with the tool's token", async () => {
      asked.length = 0;
      sent.length = 0;
      await reach(() => false)(host).headManifest("tools/x", "1").catch(() => undefined);
      expect(asked.map((a) => a.auth)).not.toContain(GATEWAY_BASIC);
      expect(sent).not.toContain("Bearer MINTED");
      expect(sent.filter((a) => a?.includes("GATEWAY-TOKEN"))).toEqual([]);
    });

    test("the external registry gets its token at the realm, for the scopes the request needs only, not those its challenge adds", async () => {
      asked.length = 0;
      sent.length = 0;
      expect(await reach((h) => h === host)(host).headManifest("main/app", "1")).toBeUndefined(); // 404 with the token: no such manifest
      expect(asked).toEqual([{ auth: GATEWAY_BASIC, scopes: ["repository:main/app:pull"] }]);
      expect(sent).toContain("Bearer MINTED");
    });
  });
});
