import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { table } from "./_render.ts";

export default defineCommand({
  summary: "List registration tokens (ids, tags, expiry, uses; never the secrets)",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    const res = await client.request<{ tokens: Record<string, unknown>[] }>("Cannot list tokens", "GET", "/admin/tokens");
    out.result(res, (r) => table(r.tokens, ["id", "tags", "hwid", "expiresAt", "uses", "expired"]));
  },
});
