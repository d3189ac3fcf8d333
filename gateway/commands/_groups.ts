/** What the `gateway groups` commands share: the group name argument and the text of a group. */
import type { GroupDetail } from "../../lib/api/admin.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { cell } from "../../lib/cli/table.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { checkDeviceArgs } from "./_device-arg.ts";

/** The one group name a command takes first, then the rest of its arguments (device uuids: the caller checks them, checkDeviceArgs). */
export function groupArgs(args: string[], rest: "none" | "uuids"): { name: string; uuids: string[] } {
  const [name, ...uuids] = args;
  if (!name) throw new UsageError(rest === "uuids" ? "give a group name, then device uuids" : "give a group name");
  if (rest === "none" && uuids.length) throw new UsageError(`unexpected argument "${uuids[0]}"`);
  if (rest === "uuids" && !uuids.length) throw new UsageError("give at least one device uuid after the group name");
  return { name, uuids };
}

/** A group as `groups show` and `groups create` print it. */
export function renderGroup(g: GroupDetail): string {
  return [
    `group:   ${cell(g.name)} (${g.kind})`,
    ...(g.query ? [`query:   ${cell(g.query)}`] : []),
    `created: ${cell(g.createdAt)}`,
    `devices: ${g.devices}${g.kind === "dynamic" ? " (matching now)" : ""}`,
    ...g.members.map((u) => `  ${cell(u)}`),
    ...(g.next ? [`(more: --after ${g.next})`] : []),
  ].join("\n");
}

/** `groups add NAME UUID...` and `groups remove NAME UUID...`: static groups only. */
export const groupMembersCommand = (change: "add" | "remove", summary: string) =>
  defineCommand({
    summary,
    usage: "<name> <uuid...>",
    description: ADMIN_HELP,
    flags: { ...adminFlags, ...formatFlag },
    async run({ flags, args, out }) {
      const { name, uuids } = groupArgs(args, "uuids");
      await checkDeviceArgs("device uuid", uuids, () => adminClient(flags));
      const client = await adminClient(flags);
      // Said apart, so "0 added" does not read as a failure: the devices were already there (or not there).
      const unchanged = (n: number, why: string) => (uuids.length > n ? ` (${uuids.length - n} ${why})` : "");
      out.result(await client.changeGroupMembers(name, { [change]: uuids }), (r) =>
        change === "add"
          ? `${r.name}: ${r.added} added${unchanged(r.added, "already in it")}, ${r.devices} devices`
          : `${r.name}: ${r.removed} removed${unchanged(r.removed, "not in it")}, ${r.devices} devices`,
      );
    },
  });
