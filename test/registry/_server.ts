/**
 * Serves the embedded registry on 127.0.0.1 (plain HTTP, an ephemeral port) the way the
 * gateway mounts it: a parent Hono app whose middleware sets the `device`/`admin` variables,
 * `createRegistry` routed at "/", and `createTokenEndpoint` for `GET /token`.
 *
 * Test-side identities: header `x-test-device: <uuid>` sets `device`; Basic or Bearer with
 * password "admin-secret" sets `admin`. The default policy lets admin do anything, devices
 * pull, and everyone else nothing; `open: true` allows every request.
 */
import { Hono, type Context } from "hono";
import { createRegistry, createTokenEndpoint, basicCredentials, bearerToken, type RegistryAccess } from "../../gateway/registry/index.ts";

export const ADMIN_PASSWORD = "admin-secret";
export const TOKEN_SECRET = "test-token-secret";

export interface TestRegistry {
  url: string;
  host: string;
  root: string;
  server: ReturnType<typeof Bun.serve>;
  stop(): Promise<void>;
}

export function policy(c: Context, access: RegistryAccess): boolean {
  if (c.get("admin") === true) return true;
  if (c.get("device")) return access.action === "pull";
  return false;
}

export async function startTestRegistry(opts: { root: string; open?: boolean }): Promise<TestRegistry> {
  let fetch: (req: Request) => Response | Promise<Response> = () => new Response("starting", { status: 503 });
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => fetch(req), maxRequestBodySize: 8 * 1024 ** 3, idleTimeout: 0 });
  const url = `http://127.0.0.1:${server.port}`;
  const app = new Hono<{ Variables: { device?: { uuid: string }; admin?: boolean } }>();
  app.use(async (c, next) => {
    const uuid = c.req.header("x-test-device");
    if (uuid) c.set("device", { uuid });
    const auth = c.req.header("authorization");
    if (basicCredentials(auth)?.password === ADMIN_PASSWORD || bearerToken(auth) === ADMIN_PASSWORD) c.set("admin", true);
    await next();
  });
  app.route(
    "/",
    createTokenEndpoint<string>({
      secret: TOKEN_SECRET,
      checkCredentials: (user, password) => (password === ADMIN_PASSWORD ? `admin:${user}` : password === "reader" ? `reader:${user}` : undefined),
      allowed: (identity, _repo, action) => identity.startsWith("admin:") || action === "pull",
    }),
  );
  app.route(
    "/",
    createRegistry({ root: opts.root, authorize: opts.open ? () => true : policy, tokenRealm: `${url}/token`, tokenSecret: TOKEN_SECRET }),
  );
  fetch = app.fetch;
  return { url, host: `127.0.0.1:${server.port}`, root: opts.root, server, stop: async () => void (await server.stop(true)) };
}
