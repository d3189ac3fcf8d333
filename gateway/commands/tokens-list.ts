import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { table } from "../../lib/cli/table.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

/**
 * A token's state in one word. A registration token whose every use is spent registers nothing
 * more, as one revoked or expired: "used up", the word registration's refusal uses, never "active".
 */
const status = (t: { revokedAt: string | null; expired: boolean; uses?: number; maxUses?: number | null }) =>
  t.revokedAt ? "revoked" : t.expired ? "expired" : t.maxUses != null && t.uses !== undefined && t.uses >= t.maxUses ? "used up" : "active";

export default defineCommand({
  summary: "List tokens: registration tokens and publish, admin and viewer tokens (ids, expiry, uses; never the secrets)",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    const res = await client.tokens();
    out.result(res, (r) =>
      [
        "Registration tokens:",
        table(
          ["ID", "NAME", "TAGS", "HWID", "USES", "EXPIRES", "STATUS"],
          r.tokens.map((t) => [t.id, t.name, t.tags, t.hwid, `${t.uses}/${t.maxUses ?? "∞"}`, t.expiresAt, status(t)]),
          { empty: "(none)" },
        ),
        "",
        "API tokens:",
        table(["ID", "ROLE", "NAME", "EXPIRES", "STATUS"], r.apiTokens.map((t) => [t.id, t.role, t.name, t.expiresAt, status(t)]), { empty: "(none)" }),
      ].join("\n"),
    );
  },
});
