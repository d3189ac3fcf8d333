import type { SignedRoot } from "../../lib/api/admin.ts";
import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { readRootFile } from "../ota/ceremony-files.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Install a root.json signed offline on the running gateway (devices follow it via N.root.json)",
  description: [
    "The gateway accepts it only if it is the next version and carries a threshold of the current root's and of",
    "its own root keys' signatures, and if it holds the snapshot and timestamp keys it names; it then re-signs the",
    "roles whose keys changed and deletes from DIR/tuf/keys any root key no longer trusted. A token alone can",
    "never change the root. See docs/keys.md.",
    "",
    ADMIN_HELP,
  ].join("\n"),
  usage: "<signed-root.json>",
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    if (args.length !== 1) throw new UsageError("give the signed root file: gateway keys push-root <root.json>");
    // Root metadata (readRootFile checked it); the gateway checks its size and signatures.
    const root = JSON.parse(await readRootFile(args[0]!)) as SignedRoot;
    const res = await (await adminClient(flags)).installRoot(root);
    out.result(res, (r) => `root.json is now version ${r.rootVersion}${r.refreshed.length > 1 ? `; re-signed ${r.refreshed.filter((x) => x !== "root").join(", ")}` : ""}`);
  },
});
