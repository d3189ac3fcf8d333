/** The daemon unit both binaries take from lib/device: its text is the file, under the name register starts. */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DAEMON_UNIT, DAEMON_UNIT_TEXT } from "./daemon-unit.ts";

test("the unit text is lib/device/fioup.service, which runs the daemon only on a registered device", () => {
  expect(DAEMON_UNIT_TEXT).toBe(readFileSync(join(import.meta.dir, DAEMON_UNIT), "utf8"));
  expect(DAEMON_UNIT_TEXT).toContain("ExecStart=/usr/bin/fioup daemon");
  expect(DAEMON_UNIT_TEXT).toContain("ConditionPathExists=/var/sota/sota.toml");
});
