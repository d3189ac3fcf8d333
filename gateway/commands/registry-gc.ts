import { UsageError, asUsage, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { join } from "node:path";
import { InvalidDurationError, parseDuration } from "../admin/duration.ts";
import { readFactoryName } from "../data-dir.ts";
import { gc } from "../registry/gc.ts";
import { checkDataFlag } from "./_data-flag.ts";

export default defineCommand({
  summary: "Delete registry blobs no manifest references (works on the data dir directly)",
  description:
    "Safe while the gateway runs: blobs younger than --grace are kept, so a push in progress is not collected.",
  flags: {
    data: { type: "string", description: "Gateway data dir", placeholder: "DIR" },
    "registry-dir": { type: "string", description: "Registry storage, if serve was given --registry-dir", placeholder: "DIR" },
    grace: { type: "string", description: "Keep blobs and uploads younger than this", default: "1h", placeholder: "DURATION" },
    "dry-run": { type: "boolean", description: "Report what would be removed, remove nothing" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.data) throw new UsageError("--data DIR is required");
    checkDataFlag(flags.data);
    const graceMs = asUsage([InvalidDurationError], () => parseDuration(flags.grace), "--grace: ") * 1000;
    await readFactoryName(flags.data); // a folder that is no data dir is an error, not "removed 0 blobs"
    const res = await gc(flags["registry-dir"] ?? join(flags.data, "registry"), { graceMs, dryRun: flags["dry-run"] });
    out.result(res, (r) =>
      `${flags["dry-run"] ? "would remove" : "removed"} ${r.blobsRemoved} blobs (${r.bytesFreed} bytes) and ${r.uploadsRemoved} stale uploads; kept ${r.blobsKept}`,
    );
  },
});
