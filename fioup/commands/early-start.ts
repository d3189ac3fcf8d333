import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { DEFAULT_APPS_FILE } from "../../lib/device/paths.ts";
import { earlyStart } from "../early-start.ts";
import { openSession } from "../session.ts";
import { sotaDirFlag } from "./_flags.ts";

export default defineCommand({
  summary: "Start preloaded apps offline from the local store (only before registration)",
  description:
    "Used by the preload image's systemd unit. Apps: /var/lmp/default-apps if present, else all preloaded apps. " +
    "Exits 51 if an app fails to start or the file names one that is not preloaded (the others still start).",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, out }) {
    // Read-only: at first boot preload's folder is there without a fioup.db, and fioup makes that at its first real run.
    const s = openSession({ ...flags, readOnly: true });
    try {
      const r = await earlyStart(s, (l) => out.info(l));
      out.result(r, (x) =>
        x.skipped
          ? `Nothing to start: ${x.skipped}`
          : [`Preloaded target ${x.target}:`, ...(x.apps.length ? x.apps.map((a) => `  ${a.name}: ${a.ok ? "running" : `failed: ${a.error}`}`) : [`  no apps to start (${DEFAULT_APPS_FILE} names none)`])].join("\n"),
      );
      return r.apps.some((a) => !a.ok) ? 51 : 0;
    } finally {
      s.close();
    }
  },
});
