/** `gateway export`: write an offline bundle for devices without a network (docs/offline.md). */
import { TargetVersion } from "../../lib/api/target.ts";
import { publicUrlOf } from "../../lib/api/admin.ts";
import { resolve } from "node:path";
import { asUsage, defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { checkFlagValues, checkRegistryHosts } from "../../lib/cli/flag-values.ts";
import { whyCannotFill } from "../../lib/fs/paths.ts";
import { platformForHwid } from "../../lib/oci/hwid-platform.ts";
import { parsePlatform } from "../../lib/oci/platform.ts";
import { clearKilledExport, exportBundle, ExportError } from "../export/export-bundle.ts";
import { rolloutHoldWarning } from "../export/_rollout-hold.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { progressLine } from "../../lib/cli/progress.ts";

export default defineCommand({
  summary: "Write an offline bundle: TUF metadata, blobs and index for one target",
  description: [
    "Writes into --out (a new or empty directory) everything a device needs to update to the target",
    "--target VERSION for --hwid without a network: the TUF metadata chain from root 1 (so a device on",
    "any older root can verify it), the target's blobs (with --from VERSION only those that target",
    "lacks), and index.json. The device runs `fioup update --offline DIR` (or watches a mount point).",
    "With --from, a changed layer is carried as a delta from that version's layer when the gateway",
    "makes one and it rebuilds the exact layer here (checked against the image config's diff_id);",
    "a device then needs that version's layer to rebuild it. --no-deltas carries whole layers only.",
    "Only the bundle goes into --out: a bundle larger than the free space there is refused before a blob is",
    "copied; the scratch (a delta's base layer and the layer it rebuilds) is in $TMPDIR (default /tmp).",
    "Reads the metadata and blobs from a running gateway, as devices see them, with an admin or publish",
    "token (a viewer token reads too); a token the gateway refuses exits 3 with its reason (unknown, revoked, expired).",
    ADMIN_HELP,
  ].join("\n"),
  // The rows of the gateway's exit-code table (gateway/exit-codes.ts) export can end with.
  exitCodes: [0, 1, 2, 3, 4, 5, 15, 20, 130, 143],
  flags: {
    ...adminFlags,
    target: { type: "string", description: "Target version to bundle", placeholder: "VERSION" },
    hwid: { type: "string", description: "Hardware id of the devices the bundle is for", placeholder: "HWID" },
    from: { type: "string", description: "Version the devices run: leave out the blobs it already has", placeholder: "VERSION" },
    "no-deltas": { type: "boolean", description: "With --from: carry changed layers whole, never as deltas" },
    out: { type: "string", description: "Bundle directory to write: a new folder (in one that exists) or an empty one", placeholder: "DIR" },
    platform: { type: "string", description: "Image platform, e.g. linux/arm64 (default: from --hwid)", placeholder: "OS/ARCH" },
    "insecure-registry": { type: "strings", description: "Registry host:port (other than the gateway) to reach over plain HTTP (what it serves is still checked against the signed digests)", placeholder: "HOST" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.target) throw new UsageError("--target VERSION is required");
    if (!flags.hwid) throw new UsageError("--hwid is required");
    if (!flags.out) throw new UsageError("--out DIR is required");
    checkFlagValues("--target", TargetVersion, [flags.target]);
    checkFlagValues("--from", TargetVersion, flags.from === undefined ? [] : [flags.from]);
    // A bundle only moves devices forward: a device refuses a target older than the one it runs.
    if (flags.from !== undefined && Number(flags.from) >= Number(flags.target))
      throw new UsageError(`--from ${flags.from} must be older than --target ${flags.target}: devices on ${flags.from} would refuse the bundle (no downgrades)`);
    if (flags["no-deltas"] && flags.from === undefined) throw new UsageError("--no-deltas only applies with --from (a bundle without --from never carries deltas)");
    checkRegistryHosts("--insecure-registry", flags["insecure-registry"]);
    const outDir = resolve(flags.out);
    const cleared = asUsage([ExportError], () => clearKilledExport(outDir));
    if (cleared) out.info(cleared);
    const outWhy = await whyCannotFill(resolve(flags.out));
    if (outWhy) throw new UsageError(`Cannot write the bundle into --out ${flags.out}: ${outWhy}; nothing was exported`);
    const platform = flags.platform ? asUsage([SyntaxError], () => parsePlatform(flags.platform!), "--platform: ") : platformForHwid(flags.hwid);
    if (!platform) throw new UsageError(`cannot tell the image platform of hardware id ${flags.hwid}: give --platform OS/ARCH`);
    // The one way admin commands find the gateway, its token and CA: the export reads and pulls with them.
    const client = await adminClient(flags);
    // The host the targets name the gateway's registry by: its public URL, which --data's local address may not be.
    const publicUrl = publicUrlOf(await client.whoami().catch(() => undefined));
    const held = await rolloutHoldWarning(client, flags.target);
    if (held) out.info(held);
    const r = await exportBundle({
      admin: client,
      ...(publicUrl ? { publicUrl: publicUrl.origin } : {}),
      version: flags.target,
      hwid: flags.hwid,
      ...(flags.from !== undefined ? { from: flags.from } : {}),
      deltas: !flags["no-deltas"],
      platform,
      out: resolve(flags.out),
      insecureRegistries: flags["insecure-registry"],
      progress: progressLine((l) => out.info(l)),
    });
    out.result(r, (x) => `wrote ${x.out}: ${x.target}${x.from ? ` from ${x.from}` : ""}, ${x.blobs} blobs${x.deltas ? ` and ${x.deltas} layer delta${x.deltas === 1 ? "" : "s"}` : ""} (${sizeText(x.bytes)}${x.deltas ? `, ${sizeText(x.bytesWithoutDeltas)} with whole layers` : ""}), ${x.tuf.length} metadata files`);
  },
});
