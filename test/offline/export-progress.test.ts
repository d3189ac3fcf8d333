/**
 * `gateway export` on a terminal says how far it is: a multi-GB layer from a remote gateway, or a
 * delta the gateway takes a while to make, must not leave the operator minutes without a word.
 * Run under `script` (a pseudo-terminal, as an operator's shell gives it): the copy shows the
 * bytes of the blob and of the whole copy on one line rewritten in place (lib/cli/progress.ts,
 * at most 4 times a second), and each layer's delta request is a line of its own before it is made.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { PROGRESS_EVERY_MS } from "../../lib/cli/progress.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { ROOT } from "../fioup/_setup.ts";
import { twoVersions, type TwoVersions } from "./_export-fixture.ts";

let fx: TwoVersions;
let dir: string;

/** `gateway export` on a pseudo-terminal: what the terminal got, and how long it took. */
async function exportOnTerminal(out: string, args: string[]): Promise<{ text: string; ms: number }> {
  const t0 = Date.now();
  const r = await run(["script", "-qfec", fx.exportCmd(out, args).map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" "), "/dev/null"], { cwd: ROOT });
  return { text: r.stdout, ms: Date.now() - t0 };
}

beforeAll(async () => {
  dir = await tempDir("export-progress-");
  fx = await twoVersions("export-progress", 8_000_000);
}, 120_000);

afterAll(async () => {
  await fx?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("gateway export on a terminal", () => {
  test("the copy shows the bytes of the blob and of the whole copy on one line rewritten in place, throttled", async () => {
    const r = await exportOnTerminal(join(dir, "whole"), []);
    const shown = r.text.split("\r\x1b[K").filter((l) => l.startsWith("  copying sha256:"));
    expect(shown.length).toBeGreaterThan(0);
    expect(shown[0]).toMatch(/^ {2}copying sha256:[0-9a-f]{12}: [0-9.]+ [KM]?i?B of [0-9.]+ [KM]?i?B; [0-9.]+ [KM]?i?B of [0-9.]+ MiB in all, \d+\/\d+ blobs done/);
    expect(shown.length).toBeLessThanOrEqual(1 + r.ms / PROGRESS_EVERY_MS.tty);
    expect(r.text).toMatch(/wrote .*whole: amd64-linux-2/);
  }, 120_000);

  test("each layer's delta request is said before it is made", async () => {
    const r = await exportOnTerminal(join(dir, "delta"), ["--from", "1"]);
    const lines = r.text.split(/\r?\n|\r\x1b\[K/);
    const asked = lines.findIndex((l) => /^ {2}layer sha256:[0-9a-f]{12} \([0-9.]+ MiB\): asking for a delta from sha256:[0-9a-f]{12}$/.test(l));
    const answered = lines.findIndex((l) => /^ {2}layer sha256:[0-9a-f]{12} .*: a delta of /.test(l));
    expect(asked).toBeGreaterThan(-1);
    expect(answered).toBeGreaterThan(asked);
  }, 120_000);
});
