import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { FIOUP_VERSION } from "../version.ts";

export default defineCommand({
  summary: "Print fioup's version",
  flags: { ...formatFlag },
  run({ out }) {
    out.result({ version: FIOUP_VERSION, bun: Bun.version }, (v) => `fioup ${v.version} (bun ${v.bun})`);
  },
});
