import { AdminApiError } from "../../lib/api/admin-client.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

/** Named targets the signed targets.json does not have: nothing is removed (exit 3, as the gateway's own 404). */
export class TargetsNotFoundError extends AdminApiError {
  override name = "TargetsNotFoundError";
  constructor(readonly names: string[]) {
    super(`${names.length === 1 ? "Target" : "Targets"} ${names.map((n) => `"${n}"`).join(", ")} not found (gateway targets list shows them); nothing was removed`, 404);
  }
}

export default defineCommand({
  summary: "Remove targets from the signed targets.json: devices are no longer offered them (a new targets.json version is signed)",
  usage: "<name>...",
  description: [
    "Every name is checked first: if any is not a target, nothing is removed and each unknown one is named (exit 3).",
    "A device already on a removed target keeps running it. What only removed targets used stays in the registry",
    "until `gateway registry gc --untargeted`.",
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    if (!args.length) throw new UsageError("give the name of at least one target (gateway targets list shows them)");
    const names = [...new Set(args)];
    const client = await adminClient(flags);
    // All or nothing as far as the CLI can: the gateway removes one target a request, so a name it
    // does not know, found only after the ones before it were removed, would leave half the job done.
    const { targets } = await client.targets();
    const unknown = names.filter((n) => !Object.hasOwn(targets, n));
    if (unknown.length) throw new TargetsNotFoundError(unknown);
    let res: Awaited<ReturnType<typeof client.removeTarget>> | undefined;
    const removed: string[] = [];
    for (const name of names) {
      try {
        res = await client.removeTarget(name);
      } catch (err) {
        // Another admin changed the targets meanwhile: say what this command did before it stopped.
        if (!removed.length || !(err instanceof AdminApiError)) throw err;
        throw new AdminApiError(`${err.message} (removed before it: ${removed.join(", ")}; not removed: ${names.slice(removed.length).join(", ")})`, err.status, { cause: err });
      }
      removed.push(name);
    }
    // The names too, as the text says them: the gateway's answer is only the targets left.
    out.result({ removed, ...res! }, (r) => `removed ${r.removed.join(", ")}; targets.json is now version ${r.version} with ${Object.keys(r.targets).length} targets`);
  },
});
