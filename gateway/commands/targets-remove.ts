import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Remove targets from the signed targets.json: devices are no longer offered them (a new targets.json version is signed)",
  usage: "<name>...",
  description: [
    "A device already on a removed target keeps running it. What only removed targets used stays in the registry",
    "until `gateway registry gc --untargeted`.",
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    if (!args.length) throw new UsageError("give the name of at least one target (gateway targets list shows them)");
    const client = await adminClient(flags);
    let res: Awaited<ReturnType<typeof client.removeTarget>> | undefined;
    for (const name of args) res = await client.removeTarget(name);
    out.result(res!, (r) => `removed ${args.join(", ")}; targets.json is now version ${r.version} with ${Object.keys(r.targets).length} targets`);
  },
});
