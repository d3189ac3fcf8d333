/** The fioup an image carries: a program, of the image's architecture, and there at all when a --base is the OS. */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../lib/cli/command.ts";
import { checkFioupBinary, checkFioupPresent } from "./fioup-binary.ts";

const dir = await mkdtemp(join(tmpdir(), "preload-fioup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first 20 bytes of a little-endian ELF file for `machine`. */
function elf(path: string, machine: number): string {
  const head = new Uint8Array(20);
  head.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
  head[18] = machine & 0xff;
  head[19] = machine >> 8;
  writeFileSync(path, head);
  return path;
}

test("a fioup of another architecture is refused naming both and the binary to give; a match or a script is taken", async () => {
  const arm64 = elf(join(dir, "fioup-arm64"), 0xb7);
  const amd64 = { os: "linux", architecture: "amd64" };
  const refused = checkFioupBinary(arm64, amd64, "--hwid x86_64-linux");
  expect(refused).rejects.toBeInstanceOf(UsageError);
  expect(refused).rejects.toThrow(
    `--fioup ${arm64} is built for arm64, but the image is for linux/amd64 (from --hwid x86_64-linux): give the fioup built for amd64 (npm run build writes dist/fioup-linux-x64)`,
  );
  await checkFioupBinary(arm64, { os: "linux", architecture: "arm64" }, "--platform");
  writeFileSync(join(dir, "wrapper"), "#!/bin/sh\nexec fioup \"$@\"\n");
  await checkFioupBinary(join(dir, "wrapper"), amd64, "--platform");
});

test("a file that is neither ELF nor a #! script is refused", async () => {
  writeFileSync(join(dir, "passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  expect(checkFioupBinary(join(dir, "passwd"), { os: "linux", architecture: "arm64" }, "--platform")).rejects.toThrow(
    `--fioup ${join(dir, "passwd")} is no fioup: it is neither an ELF binary nor a script starting with #!`,
  );
});

test("without --fioup: a base without /usr/bin/fioup is refused, no base is a warning, a base with one is fine", async () => {
  const platform = { os: "linux", architecture: "arm64" };
  const tree = join(dir, "tree");
  mkdirSync(join(tree, "usr/bin"), { recursive: true });
  expect(checkFioupPresent({ base: "base.tar", tree, platform })).rejects.toThrow("--base base.tar has no /usr/bin/fioup and no --fioup is given");
  expect(await checkFioupPresent({ tree, platform })).toStartWith("warning: the image holds no /usr/bin/fioup (no --fioup, no --base)");
  expect(await checkFioupPresent({ fioup: "fioup", tree, platform })).toBeUndefined();
  writeFileSync(join(tree, "usr/bin/fioup"), "");
  expect(await checkFioupPresent({ base: "base.tar", tree, platform })).toBeUndefined();
});
