/**
 * The fioup an image carries as /usr/bin/fioup: the image's early-start service runs it at the
 * device's first boot, and the daemon unit once the device is registered. A missing fioup or one
 * built for another architecture fails only there, on the device ("exec: /usr/bin/fioup: not
 * found", "Exec format error"), so preload checks both while it runs, where the fix is one flag.
 *
 * @module
 */
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../lib/cli/command.ts";
import { formatPlatform, type Platform } from "../lib/oci/platform.ts";

/** ELF e_machine values of the architectures a device runs, as OCI names them. */
const ELF_MACHINES: Record<number, string> = { 0x3e: "amd64", 0xb7: "arm64", 0x28: "arm", 0x03: "386", 0xf3: "riscv64" };
/** The architectures scripts/build.ts builds fioup for, by the name in its file name. */
const DIST_NAME: Record<string, string> = { amd64: "x64", arm64: "arm64" };

/**
 * The --fioup binary must run on the image's platform: an x86-64 fioup in an arm64 image fails
 * only at the device's first boot (the early-start service: "Exec format error"). A file that is
 * no ELF binary (a wrapper script) or of an architecture this table does not know is taken.
 *
 * @param from What named the platform, for the message ("--platform", "--hwid rpi4").
 * @throws {UsageError} Naming the binary's and the image's architectures.
 */
export async function checkFioupArch(path: string, platform: Platform, from: string): Promise<void> {
  const head = new Uint8Array(await Bun.file(path).slice(0, 20).arrayBuffer());
  if (head.length < 20 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) return;
  const machine = head[5] === 2 ? (head[18]! << 8) | head[19]! : head[18]! | (head[19]! << 8);
  const arch = ELF_MACHINES[machine];
  if (arch && platform.architecture && arch !== platform.architecture) {
    throw new UsageError(
      `--fioup ${path} is built for ${arch}, but the image is for ${formatPlatform(platform)} (from ${from}): give the fioup built for ${platform.architecture}${
        DIST_NAME[platform.architecture] ? ` (npm run build writes dist/fioup-linux-${DIST_NAME[platform.architecture]})` : ""
      }`,
    );
  }
}

/**
 * Without --fioup, whether the image will hold a fioup anyway: a --base is the whole OS, and
 * without /usr/bin/fioup in it the image cannot start its apps (refused). Without a base the tree
 * may be laid onto an OS built elsewhere that installs fioup: said, not refused.
 *
 * @param tree The image's tree, the base already unpacked into it.
 * @returns A warning line, when there is no base and no --fioup.
 * @throws {UsageError} When the base has no /usr/bin/fioup and no --fioup is given.
 */
export async function checkFioupPresent(o: { fioup?: string; base?: string; tree: string; platform: Platform }): Promise<string | undefined> {
  if (o.fioup) return undefined;
  const why = "the image's early-start service runs /usr/bin/fioup at first boot";
  const give = `give --fioup FILE, the fioup built for ${formatPlatform(o.platform)}`;
  if (o.base && !(await lstat(join(o.tree, "usr/bin/fioup")).catch(() => undefined))) {
    throw new UsageError(`The image would hold no fioup: --base ${o.base} has no /usr/bin/fioup and no --fioup is given, but ${why} ("exec: /usr/bin/fioup: not found"); ${give}`);
  }
  return o.base ? undefined : `warning: the image holds no /usr/bin/fioup (no --fioup, no --base): ${why}, and fails there unless the OS this tree is laid onto installs fioup; ${give}`;
}
