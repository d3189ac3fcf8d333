import { UsageError, asUsage, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { KeyFileError, loadKeyFile } from "../../lib/tuf/keys.ts";
import { parseMetadata } from "../../lib/tuf/metadata.ts";
import { NotARootKeyError, rootSignatureStatus, signRoot } from "../../lib/tuf/root-ceremony.ts";
import { previousRootPath, readRootFile } from "../ota/ceremony-files.ts";

export default defineCommand({
  summary: "Add one key's signature to a root.json draft, and say which signatures it still needs",
  description: [
    "Run by each root key holder, on the machine that holds their key (offline): the key file never reaches",
    "the gateway. The draft is rewritten in place with the signature added. A new root counts only when it",
    "carries a threshold of the previous root's root keys and a threshold of its own; the previous root is",
    "--previous, or <N-1>.root.json beside the draft (gateway keys init-root writes it there). See docs/keys.md.",
  ].join("\n"),
  usage: "<draft.json>",
  flags: {
    key: { type: "string", description: "The private key file to sign with", placeholder: "KEYFILE" },
    previous: { type: "string", description: "The previous root.json (default: <N-1>.root.json beside the draft)", placeholder: "FILE" },
    ...formatFlag,
  },
  async run({ flags, args, out }) {
    if (args.length !== 1) throw new UsageError("give the draft file: gateway keys sign-root <draft.json> --key KEYFILE");
    if (!flags.key) throw new UsageError("--key KEYFILE is required");
    const file = args[0]!;
    const draft = await readRootFile(file);
    const parsed = parseMetadata("root", draft);
    const version = parsed.signed.version;
    const previousPath = flags.previous ?? previousRootPath(file, version);
    const previous = flags.previous || (await Bun.file(previousPath).exists()) ? await readRootFile(previousPath) : undefined;
    // Another version (the draft itself, say) counted its own keys as the previous root's and said "ready".
    const previousVersion = previous === undefined ? undefined : parseMetadata("root", previous).signed.version;
    if (previousVersion !== undefined && previousVersion !== version - 1)
      throw new UsageError(`${flags.previous ? "--previous " : ""}${previousPath} is root.json v${previousVersion}: the draft is v${version}, so the previous root is v${version - 1}`);
    // A --key that is no private key file, or the wrong one (another role's, another holder's), is bad
    // usage (exit 2), as a --previous of the wrong version is.
    const key = await asUsage([KeyFileError], () => loadKeyFile(flags.key!));
    // Signing twice with one key renews its signature; said, so no holder thinks it counted twice.
    const alreadySigned = key.keyId in parsed.signatures;
    const signed = asUsage([NotARootKeyError], () => signRoot(draft, key, previous), "--key: ");
    await writeFileAtomic(file, signed);
    const status = rootSignatureStatus(signed, previous);
    out.result({ draft: file, keyId: key.keyId, alreadySigned, thresholds: status, ready: previous !== undefined && status.every((s) => s.met) }, (r) =>
      [
        `signed ${r.draft} (v${version}) with ${r.keyId}${r.alreadySigned ? " (it had signed already: its signature is renewed, it counts once)" : ""}`,
        ...r.thresholds.map((s) => `  ${s.of === "new" ? "new root keys     " : "previous root keys"}: ${s.signed.length} of ${s.threshold} needed${s.met ? " (met)" : `; unsigned: ${s.unsigned.join(", ")}`}`),
        previous === undefined ? `  (no ${previousPath}: the previous root's threshold was not checked)` : r.ready ? `ready: gateway keys push-root --data DIR ${r.draft} (or --server URL --token TOKEN in place of --data)` : "not ready yet: more signatures needed",
      ].join("\n"),
    );
  },
});
