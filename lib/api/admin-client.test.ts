/**
 * The admin client's one request path, against a plain loopback server (http://: no CA to pin):
 * a file outside /admin (`file`, as `gateway export` and preload read /repo/) goes out with the
 * token under the server's path, 404 is "none", a refusal carries the gateway's words, and an
 * unanswered request is a GatewayUnreachableError, as for every JSON call.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { AdminApiError, AdminClient, GatewayUnreachableError } from "./admin-client.ts";
import { WhoAmI } from "./admin.ts";

let server: ReturnType<typeof Bun.serve>;
const asked: { path: string; auth: string | null }[] = [];

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      const path = new URL(req.url).pathname;
      asked.push({ path, auth: req.headers.get("authorization") });
      if (path === "/ota/repo/1.root.json") return new Response('{"signed":{}}');
      if (path === "/ota/repo/refused.json") return Response.json({ error: "Token refused: unknown token" }, { status: 403 });
      if (path === "/ota/admin/whoami") return Response.json({ role: "viewer" });
      return new Response("not found", { status: 404 });
    },
  });
});
afterAll(() => server?.stop(true));

const connect = (token = "secret.pin") => AdminClient.connect({ server: `http://127.0.0.1:${server.port}/ota/`, token });

test("file: the bytes served under the server's path, with the token; undefined for 404", async () => {
  const admin = await connect();
  asked.length = 0;
  expect(new TextDecoder().decode(await admin.file("/repo/1.root.json"))).toBe('{"signed":{}}');
  expect(await admin.file("/repo/2.root.json")).toBeUndefined();
  expect(asked).toEqual([
    { path: "/ota/repo/1.root.json", auth: "Bearer secret.pin" },
    { path: "/ota/repo/2.root.json", auth: "Bearer secret.pin" },
  ]);
  expect(admin.token).toBe("secret.pin");
  expect((await admin.request(WhoAmI, "GET", "/admin/whoami")).role).toBe("viewer");
});

test("file: a refusal says the URL and the gateway's words, and keeps its status and reason", async () => {
  const admin = await connect();
  const err = await admin.file("/repo/refused.json").catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AdminApiError);
  expect(err).not.toBeInstanceOf(GatewayUnreachableError);
  expect((err as AdminApiError).message).toBe(`Cannot fetch ${admin.server}/repo/refused.json: gateway answered 403: Token refused: unknown token`);
  expect((err as AdminApiError).status).toBe(403);
  expect((err as AdminApiError).reason).toBe("Token refused: unknown token");
});

test("a gateway that does not answer: GatewayUnreachableError for a file and for a JSON call alike", async () => {
  const gone = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const url = `http://127.0.0.1:${gone.port}`;
  gone.stop(true);
  const admin = await AdminClient.connect({ server: url, token: "t" });
  const fileErr = await admin.file("/repo/1.root.json").catch((e: unknown) => e);
  expect(fileErr).toBeInstanceOf(GatewayUnreachableError);
  expect((fileErr as Error).message).toStartWith(`Cannot fetch ${url}/repo/1.root.json: connection refused`);
  const callErr = await admin.whoami().catch((e: unknown) => e);
  expect(callErr).toBeInstanceOf(GatewayUnreachableError);
  expect((callErr as Error).message).toStartWith(`Cannot GET ${url}/admin/whoami: connection refused`);
});
