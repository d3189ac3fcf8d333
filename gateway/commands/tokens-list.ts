import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { table } from "../../lib/cli/table.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { tokenState } from "../../lib/api/admin.ts";


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
          r.tokens.map((t) => [t.id, t.name, t.tags, t.hwid, `${t.uses}/${t.maxUses ?? "∞"}`, t.expiresAt, tokenState(t)]),
          { empty: "(none)" },
        ),
        "",
        "API tokens:",
        table(["ID", "ROLE", "NAME", "EXPIRES", "STATUS"], r.apiTokens.map((t) => [t.id, t.role, t.name, t.expiresAt, tokenState(t)]), { empty: "(none)" }),
      ].join("\n"),
    );
  },
});
