import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import type { TargetEntry } from "../../lib/api/index.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { table } from "./_render.ts";

export default defineCommand({
  summary: "List the signed targets (the content of targets.json)",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    const res = await client.request<{ targets: Record<string, TargetEntry>; version: number }>("Cannot list targets", "GET", "/admin/targets");
    out.result(res, (r) => {
      const rows = Object.entries(r.targets)
        .map(([name, e]) => ({
          name,
          version: e.custom.version,
          hardwareIds: e.custom.hardwareIds,
          tags: e.custom.tags,
          apps: Object.keys(e.custom.docker_compose_apps),
          createdAt: e.custom.createdAt,
        }))
        .sort((a, b) => Number(a.version) - Number(b.version) || a.name.localeCompare(b.name));
      return `targets.json version ${r.version}\n` + table(rows, ["name", "version", "hardwareIds", "tags", "apps", "createdAt"]);
    });
  },
});
