/**
 * A docker-registry 2.8 configured for token auth (the Bearer flow Docker Hub, GHCR and Harbor
 * use), plus a small token server on loopback that checks Basic credentials and signs ES256
 * JWTs with a self-signed certificate the registry trusts. Used only by test/oci.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, run, tempDir } from "../harness/tmp.ts";
import { registryConfig, startRegistryProcess } from "../harness/docker-registry.ts";

export interface TokenRegistry {
  host: string;
  /** Scopes asked of the token server, one entry per token request. */
  tokenRequests: { scopes: string[]; user?: string }[];
  stop(): Promise<void>;
}

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

export async function startTokenRegistry(creds: { user: string; password: string }): Promise<TokenRegistry> {
  const dir = await tempDir("token-registry-");
  // openssl writes the issuer certificate the registry trusts and the key we sign with
  await run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", "/CN=test token issuer", "-keyout", join(dir, "issuer.key"), "-out", join(dir, "issuer.pem")]);
  const pemBody = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  const x5c = pemBody(readFileSync(join(dir, "issuer.pem"), "utf8")).toString("base64");
  const privateKey = await crypto.subtle.importKey("pkcs8", pemBody(readFileSync(join(dir, "issuer.key"), "utf8")), { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const tokenRequests: TokenRegistry["tokenRequests"] = [];

  const tokenServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const auth = req.headers.get("authorization") ?? "";
      const [user, pass] = auth.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString().split(":") : [];
      const scopes = url.searchParams.getAll("scope");
      tokenRequests.push({ scopes, user });
      if (user !== creds.user || pass !== creds.password) return Response.json({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }, { status: 401 });
      const access = scopes.map((s) => {
        const [type, name, actions] = s.split(":");
        return { type, name, actions: (actions ?? "").split(",").filter(Boolean) };
      });
      const now = Math.floor(Date.now() / 1000);
      const header = b64url(JSON.stringify({ typ: "JWT", alg: "ES256", x5c: [x5c] }));
      const claims = b64url(
        JSON.stringify({ iss: "test-issuer", sub: user, aud: url.searchParams.get("service"), exp: now + 300, nbf: now - 10, iat: now, jti: crypto.randomUUID(), access }),
      );
      const sig = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, new TextEncoder().encode(`${header}.${claims}`)));
      return Response.json({ token: `${header}.${claims}.${b64url(sig)}`, expires_in: 300 });
    },
  });

  const port = await freePort();
  let proc: Awaited<ReturnType<typeof startRegistryProcess>>;
  try {
    proc = await startRegistryProcess({
      name: "docker-registry (token auth)",
      dir,
      config: registryConfig({
        dir,
        host: `127.0.0.1:${port}`,
        auth: `auth:
  token:
    realm: http://127.0.0.1:${tokenServer.port}/token
    service: test-registry
    issuer: test-issuer
    rootcertbundle: ${join(dir, "issuer.pem")}
`,
      }),
      readyWhat: "answer 401 on /v2/",
      ready: async () => {
        const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return res.status === 401;
      },
    });
  } catch (err) {
    tokenServer.stop(true);
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    tokenRequests,
    stop: async () => {
      tokenServer.stop(true);
      await proc.stop();
    },
  };
}
