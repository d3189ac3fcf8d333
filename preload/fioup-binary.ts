/**
 * The fioup an image carries as /usr/bin/fioup: the image's early-start service runs it at the
 * device's first boot, and the daemon unit once the device is registered. A missing fioup or one
 * built for another architecture fails only there, on the device ("exec: /usr/bin/fioup: not
 * found", "Exec format error"), so preload checks both while it runs, where the fix is one flag.
 * So is a file that is no program at all, or another program: `dist/` holds the gateway and
 * preload binaries beside fioup's, one tab-completion away. A binary this machine can run is
 * asked its `--version`, which fioup answers `fioup VERSION`; one built for another architecture
 * cannot be run here, and nothing else in it says cheaply and reliably which program it is (all
 * three are `bun build --compile` binaries), so only its architecture is checked.
 *
 * @module
 */
import { lstat, stat } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../lib/cli/command.ts";
import { formatPlatform, hostPlatform, type Platform } from "../lib/oci/platform.ts";
import { runTool } from "./_children.ts";

/** ELF e_machine values of the architectures a device runs, as OCI names them. */
const ELF_MACHINES: Record<number, string> = { 0x3e: "amd64", 0xb7: "arm64", 0x28: "arm", 0x03: "386", 0xf3: "riscv64" };
/** The architectures scripts/build.ts builds fioup for, by the name in its file name. */
const DIST_NAME: Record<string, string> = { amd64: "x64", arm64: "arm64" };

/** How long a --fioup of this machine's architecture has to answer `--version` (fioup answers at once). */
const VERSION_TIMEOUT_MS = 10_000;

/** What `fioup --version` prints first: the CLI's name, then its version (lib/cli/command.ts). */
const FIOUP_VERSION = /^fioup(\s|$)/;

/**
 * The --fioup binary must be fioup, for the image's platform: a file that is neither an ELF binary
 * nor a `#!` script is refused; so is an ELF binary for another architecture than the image's (an
 * x86-64 fioup in an arm64 image fails at the device's first boot: "Exec format error"), and one
 * for this machine's architecture whose `--version` does not say fioup (run with a 10 s limit; a
 * file without an execute bit is not run: the image gets it as 0755). A script, and a binary of
 * another architecture than this machine's, are taken as they are.
 *
 * @param from What named the platform, for the message ("--platform", "--hwid rpi4").
 * @throws {UsageError} Naming the file, what it is, and the fioup to give.
 */
export async function checkFioupBinary(path: string, platform: Platform, from: string): Promise<void> {
  const head = new Uint8Array(await Bun.file(path).slice(0, 20).arrayBuffer());
  const give = `give the fioup built for ${platform.architecture}${DIST_NAME[platform.architecture] ? ` (npm run build writes dist/fioup-linux-${DIST_NAME[platform.architecture]})` : ""}`;
  if (head[0] === 0x23 && head[1] === 0x21) return; // "#!": a wrapper script
  if (head.length < 20 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) {
    throw new UsageError(`--fioup ${path} is no fioup: it is neither an ELF binary nor a script starting with #! (the image's early-start service would fail to run it at the device's first boot); ${give}`);
  }
  const machine = head[5] === 2 ? (head[18]! << 8) | head[19]! : head[18]! | (head[19]! << 8);
  const arch = ELF_MACHINES[machine];
  if (arch && platform.architecture && arch !== platform.architecture) {
    throw new UsageError(`--fioup ${path} is built for ${arch}, but the image is for ${formatPlatform(platform)} (from ${from}): ${give}`);
  }
  if (arch !== hostPlatform().architecture || ((await stat(path)).mode & 0o111) === 0) return;
  const r = await runTool([path, "--version"], { timeoutMs: VERSION_TIMEOUT_MS });
  const said = r.stdout.split("\n")[0]!.trim();
  if (!r.timedOut && r.code === 0 && FIOUP_VERSION.test(said)) return;
  const answer = r.timedOut
    ? `it did not answer --version within ${VERSION_TIMEOUT_MS / 1000} s`
    : said
      ? `asked its --version, it says "${said.slice(0, 80)}"`
      : `asked its --version, it says nothing on stdout (exit ${r.code}${r.stderr ? `: ${r.stderr.slice(0, 120)}` : ""})`;
  throw new UsageError(`--fioup ${path} is not fioup: ${answer}, where fioup says "fioup VERSION"; ${give}`);
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
