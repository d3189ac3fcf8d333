import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { table } from "../../lib/cli/table.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "List device groups with their number of devices (dynamic: matching now)",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    out.result(await client.groups(), (r) =>
      table(["NAME", "KIND", "DEVICES", "QUERY", "CREATED"], r.groups.map((g) => [g.name, g.kind, g.devices, g.query, g.createdAt]), { empty: "(no groups)" }),
    );
  },
});
