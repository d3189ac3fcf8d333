/**
 * How admin commands reach a running gateway: `--server URL --token T`, or
 * `--data DIR` to read DIR/admin-token, DIR/serve.json (the listen URL) and
 * DIR/pki/ca.pem. Given only a URL and a token, the CA is fetched from
 * /ca.pem and accepted only if its sha256 equals the token's pin.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { UsageError, type FlagSpec } from "../../lib/cli/command.ts";
import { readAdminToken, readServeInfo } from "../data-dir.ts";
import { sha256Hex } from "../pki/ca.ts";
import { fromPem } from "../../lib/x509/pem.ts";

/** The --help text every admin command shares. */
export const ADMIN_HELP =
  "Talks to a running gateway's admin API over HTTPS: --data DIR finds it (DIR/serve.json, DIR/admin-token,\n" +
  "DIR/pki/ca.pem); or --server URL --token TOKEN, trusting the CA at URL/ca.pem only if it matches the token's pin.";

export const adminFlags = {
  data: { type: "string", description: "Gateway data dir: read the admin token, URL and CA from it", placeholder: "DIR" },
  server: { type: "string", description: "Gateway URL (default: the one DIR/serve.json records)", placeholder: "URL" },
  token: { type: "string", description: "Admin token (default: DIR/admin-token; env GATEWAY_TOKEN)", placeholder: "TOKEN" },
} as const satisfies Record<string, FlagSpec>;

export class AdminRequestError extends Error {
  override name = "AdminRequestError";
  constructor(
    what: string,
    readonly status: number,
    why: string,
  ) {
    super(`${what}: gateway answered ${status}: ${why}`);
  }
}

export class CaPinMismatchError extends Error {
  override name = "CaPinMismatchError";
  constructor(url: string) {
    super(`Cannot trust ${url}: its /ca.pem does not match the pin in the token`);
  }
}

export interface AdminClient {
  url: string;
  request<T>(what: string, method: string, path: string, body?: unknown): Promise<T>;
}

export async function adminClient(flags: { data?: string; server?: string; token?: string }): Promise<AdminClient> {
  let url = flags.server;
  let token = flags.token ?? process.env.GATEWAY_TOKEN;
  let ca: string | undefined;
  if (flags.data) {
    token ??= await readAdminToken(flags.data);
    url ??= (await readServeInfo(flags.data))?.url;
    ca = await readFile(join(flags.data, "pki", "ca.pem"), "utf8").catch(() => undefined);
    if (!url) throw new UsageError(`no gateway is running on ${flags.data} (no serve.json): start it or pass --server`);
  }
  if (!url || !token) throw new UsageError("say which gateway: --data DIR, or --server URL with --token TOKEN");
  url = url.replace(/\/+$/, "");
  if (!ca) {
    const pin = token.split(".")[1];
    const res = await fetch(`${url}/ca.pem`, { tls: { rejectUnauthorized: false } });
    const pem = await res.text();
    if (!pin || sha256Hex(fromPem(pem, "CERTIFICATE")) !== pin) throw new CaPinMismatchError(url);
    ca = pem;
  }
  const base = url;
  return {
    url: base,
    async request<T>(what: string, method: string, path: string, body?: unknown): Promise<T> {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        tls: { ca },
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      if (!res.ok) throw new AdminRequestError(what, res.status, (json as { error?: string })?.error ?? (text.slice(0, 200) || res.statusText));
      return json as T;
    },
  };
}
