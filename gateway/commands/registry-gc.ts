import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { existsSync } from "node:fs";
import { durationFlag } from "../../lib/cli/flag-values.ts";
import { embeddedRegistryPath, readFactoryName } from "../data-dir.ts";
import { gc } from "../registry/gc.ts";
import { currentTargetApps } from "../registry/current-targets.ts";
import { checkDataFlag } from "./_data-flag.ts";

export default defineCommand({
  summary: "Delete registry blobs no manifest references (works on the data dir directly)",
  description:
    "Safe while the gateway runs: blobs younger than --grace are kept, so a push in progress is not collected. " +
    "With --untargeted, manifests no target of the current signed targets.json reaches (with their tags) go too, and the blobs only they referenced: " +
    "what pruned and removed targets left behind. It reads the targets from the gateway's database (read-only) and removes nothing if it cannot.",
  flags: {
    data: { type: "string", description: "Gateway data dir", placeholder: "DIR" },
    "registry-dir": { type: "string", description: "Registry storage, if serve was given --registry-dir (the same folder; without it gc refuses a data dir that has no registry/)", placeholder: "DIR" },
    grace: { type: "string", description: "Keep blobs, manifests and uploads younger than this (0s: none)", default: "1h", placeholder: "DURATION" },
    untargeted: { type: "boolean", description: "Also remove manifests no current target reaches, and what only they referenced" },
    db: { type: "string", description: "With --untargeted: the --db the gateway runs with (default: DIR/gateway.db)", placeholder: "URL|FILE" },
    "dry-run": { type: "boolean", description: "Report what would be removed, remove nothing" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.data) throw new UsageError("--data DIR is required");
    checkDataFlag(flags.data);
    if (flags.db !== undefined && !flags.untargeted) throw new UsageError("--db: the database is read only for --untargeted; add --untargeted, or leave --db out");
    // No grace at all ("0s") is allowed here, unlike for other durations: nothing is spared then, for when no publish runs.
    const graceMs = durationFlag("--grace", flags.grace, { allowZero: true }) * 1000;
    await readFactoryName(flags.data); // a folder that is no data dir is an error, not "removed 0 blobs"
    const root = flags["registry-dir"] ?? embeddedRegistryPath(flags.data);
    // serve makes DIR/registry only when the registry is there (data-dir.ts): without it, it is elsewhere.
    if (!flags["registry-dir"] && !existsSync(root))
      throw new UsageError(
        `${flags.data} holds no registry/: gateway serve keeps this gateway's registry elsewhere (its --registry-dir); give gc the same --registry-dir DIR. Nothing was removed`,
      );
    const untargeted = flags.untargeted ? await currentTargetApps(flags.data, flags.db) : undefined;
    const res = await gc(root, { graceMs, dryRun: flags["dry-run"], untargeted });
    const verb = flags["dry-run"] ? "would remove" : "removed";
    out.result(res, (r) =>
      untargeted
        ? `${verb} ${r.manifestsRemoved} manifests no target reaches and ${r.blobsRemoved} blobs (${r.bytesFreed} bytes freed), and ${r.uploadsRemoved} stale uploads; kept ${r.blobsKept} blobs`
        : `${verb} ${r.blobsRemoved} blobs (${r.bytesFreed} bytes) and ${r.uploadsRemoved} stale uploads; kept ${r.blobsKept}`,
    );
  },
});
