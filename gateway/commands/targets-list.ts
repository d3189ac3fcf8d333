import { containersCommitText } from "../../lib/api/target.ts";
import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { table } from "../../lib/cli/table.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "List the signed targets (the content of targets.json)",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    const res = await client.targets();
    out.result(res, (r) => {
      const rows = Object.entries(r.targets).sort(
        ([an, a], [bn, b]) => Number(a.custom.version) - Number(b.custom.version) || an.localeCompare(bn),
      );
      return (
        `targets.json version ${r.version}\n` +
        table(
          ["NAME", "VERSION", "HARDWARE IDS", "TAGS", "APPS", "COMMIT", "CREATED"],
          rows.map(([name, e]) => [name, e.custom.version, e.custom.hardwareIds, e.custom.tags, Object.keys(e.custom.docker_compose_apps), containersCommitText(e.custom), e.custom.createdAt]),
          { empty: "(none)" },
        )
      );
    });
  },
});
