import { expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EXIT } from "../../fioup/exit-codes.ts";
import { ROOT } from "../fioup/_setup.ts";
import { run, tempDir } from "../harness/tmp.ts";

test("fioup-agent.service passes systemd-analyze verify and runs `fioup agent` after docker", async () => {
  const unit = readFileSync(join(ROOT, "fioup/systemd/fioup-agent.service"), "utf8");
  expect(unit).toContain("ExecStart=/usr/bin/fioup agent\n");
  expect(unit).toMatch(/^After=.*docker\.service/m);
  // Exits a restart cannot mend stop it, by fioup's own codes (the agent held elsewhere, a bad config).
  expect(unit).toContain(`RestartPreventExitStatus=${EXIT.USAGE} ${EXIT.LOCKED} ${EXIT.CONFIG}\n`);
  // systemd checks that ExecStart exists: point it at a stand-in.
  const dir = await tempDir("kanto-unit-");
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(dir, "bin/fioup"), "#!/bin/sh\n");
  chmodSync(join(dir, "bin/fioup"), 0o755);
  writeFileSync(join(dir, "fioup-agent.service"), unit.replace("/usr/bin/fioup", join(dir, "bin/fioup")));
  const r = await run(["systemd-analyze", "verify", join(dir, "fioup-agent.service")], { allowFail: true });
  expect({ code: r.code, stderr: r.stderr.split("\n").filter((l) => l.includes("fioup-agent.service")).join("\n") }).toEqual({ code: 0, stderr: "" });
});
