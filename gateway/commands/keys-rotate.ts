import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ROLE_NAMES, type RoleName } from "../../lib/tuf/metadata.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";

export default defineCommand({
  summary: "Rotate an online TUF key (targets, snapshot or timestamp) with the root key held in the data dir",
  description:
    "Asks the running gateway to make a new key, publish a new root.json listing it (signed by the root key in\n" +
    "DIR/tuf/keys/) and re-sign the role. Devices follow via N.root.json. With replicas, the others take the new\n" +
    "key from the shared database within about 5 s, sealed with the factory CA's key (gateway/README.md, Replicas).\n" +
    "`root` is refused here (exit 2; the gateway refuses it too), and the gateway refuses any role when the root key is offline: then draft, sign and install\n" +
    "the new root with gateway keys init-root / sign-root / push-root (docs/keys.md)." +
    "\n\n" +
    ADMIN_HELP,
  usage: "<role>",
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const role = args[0] as RoleName;
    const online: readonly string[] = ROLE_NAMES.filter((r) => r !== "root");
    if ((role as string) === "root") throw new UsageError("the root key is not rotated here: draft, sign and install a new root with gateway keys init-root / sign-root / push-root (docs/keys.md)");
    if (!online.includes(role) || args.length !== 1) throw new UsageError(`give one role: ${online.join(", ")}`);
    const client = await adminClient(flags);
    const res = await client.rotateKey(role);
    out.result(res, (r) => `rotated ${r.role} key; root.json is now version ${r.rootVersion}`);
  },
});
