/**
 * How admin commands reach a running gateway: `--server URL --token T`, or
 * `--data DIR` to read DIR/admin-token, DIR/serve.json (the listen URL) and
 * DIR/pki/ca.pem. The client itself is `lib/api/admin-client.ts`; given only a
 * URL and a token it trusts the CA at /ca.pem only if it matches the token's pin.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AdminClient, GatewayUnreachableError } from "../../lib/api/admin-client.ts";
import { checkGatewayUrl } from "../../lib/cli/flag-values.ts";
import { UsageError, type FlagSpec } from "../../lib/cli/command.ts";
import { DATA_DIR_MARKS, DataDirError, DataDirUnreadableError, looksLikeDataDir, readAdminToken, readServeInfo } from "../data-dir.ts";
import { checkDataFlag } from "./_data-flag.ts";

/** The --help text every admin command shares. */
export const ADMIN_HELP =
  "Talks to a running gateway's admin API over HTTPS: --data DIR finds it (DIR/serve.json, DIR/admin-token,\n" +
  "DIR/pki/ca.pem); or --server URL --token TOKEN, trusting the CA at URL/ca.pem only if it matches the token's pin.";

export const adminFlags = {
  data: { type: "string", description: "Gateway data dir: read the admin token, URL and CA from it", placeholder: "DIR" },
  server: { type: "string", description: "Gateway URL, https://HOST[:PORT] (default: the one DIR/serve.json records)", placeholder: "URL" },
  token: { type: "string", description: "Admin token, or a publish or viewer token for what its role allows (default: DIR/admin-token with --data, else env GATEWAY_TOKEN)", placeholder: "TOKEN" },
} as const satisfies Record<string, FlagSpec>;

/**
 * The admin client the flags name.
 *
 * @throws {UsageError} If the flags do not say which gateway, or --server is no https:// URL.
 */
export async function adminClient(flags: { data?: string; server?: string; token?: string }): Promise<AdminClient> {
  // Before any file is read or connection made: "notaurl" would end as "Invalid URL" (exit 1),
  // and http:// as a connection the gateway closes unanswered (exit 4).
  if (flags.server) checkGatewayUrl("--server", flags.server);
  let server = flags.server;
  // --data's own admin token before GATEWAY_TOKEN: the variable often holds a publish token (CI, a
  // shell that ran gateway publish), which would refuse the admin command --data was meant for.
  let token = flags.token;
  let ca: string | undefined;
  if (flags.data) {
    // A folder that is not there is a typo (bad usage); a data dir whose gateway is stopped is a
    // gateway that cannot be reached (exit 4), as a --server that does not answer is.
    checkDataFlag(flags.data);
    try {
      // A folder that is no data dir at all (not a stopped gateway's): said so (exit 1), as backup does.
      if (!flags.server && !(await looksLikeDataDir(flags.data)))
        throw new DataDirError(`${flags.data} is not a gateway data dir (it holds none of ${DATA_DIR_MARKS.join(", ")}): give the --data that gateway serve uses`);
      token ??= await readAdminToken(flags.data);
      server ??= (await readServeInfo(flags.data))?.url;
    } catch (e) {
      // Another user's data dir (a missing sudo): the admin API is the way round it.
      if (e instanceof DataDirUnreadableError) throw new DataDirUnreadableError(e.path, e.errno, ", or give --server URL --token TOKEN");
      throw e;
    }
    ca = await readFile(join(flags.data, "pki", "ca.pem"), "utf8").catch(() => undefined);
    if (!server) throw new GatewayUnreachableError(`no gateway is running on ${flags.data} (no serve.json): start it, or pass --server`);
  }
  token ??= process.env.GATEWAY_TOKEN;
  if (server && !token && flags.data) throw new UsageError(`no admin-token in ${flags.data}: pass --token TOKEN (or set GATEWAY_TOKEN)`);
  if (server && !token) throw new UsageError("--server needs --token TOKEN (an admin token, or a publish or viewer token for what its role allows; or set GATEWAY_TOKEN)");
  if (!server || !token) throw new UsageError("say which gateway: --data DIR, or --server URL with --token TOKEN");
  return AdminClient.connect({ server, token, ...(ca ? { ca } : {}) });
}
