import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

const ROLES = ["root", "targets", "snapshot", "timestamp"] as const;

export default defineCommand({
  summary: "Rotate a TUF role's signing key (root, targets, snapshot or timestamp)",
  description:
    "Asks the running gateway to make a new key, publish a new root.json listing it (signed by the root key;\n" +
    "by old and new root keys for a root rotation) and re-sign the role. Devices follow via N.root.json.\n" +
    "The root key (DIR/tuf/keys/root.json) must be present while rotating." +
    "\n\n" +
    ADMIN_HELP,
  usage: "<role>",
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const role = args[0] as (typeof ROLES)[number];
    if (!ROLES.includes(role) || args.length !== 1) throw new UsageError(`give one role: ${ROLES.join(", ")}`);
    const client = await adminClient(flags);
    const res = await client.rotateKey(role);
    out.result(res, (r) => `rotated ${r.role} key; root.json is now version ${r.rootVersion}`);
  },
});
