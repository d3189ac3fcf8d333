/**
 * Which image platform a hardware id runs, so publish can refuse a target
 * whose images a device could not start, and preload can pick the right
 * manifest out of an index. The map, first match wins:
 *
 * 1. an explicit override (`gateway publish --hwid-platform HWID=os/arch`,
 *    factory-config.yml `containers.platforms`);
 * 2. the architecture the id starts with, alone or before a dash
 *    (`amd64-linux`, `x86_64-linux`, `arm64-linux`, `aarch64-foo`, `arm-linux`,
 *    `armv7-linux`, `armv6-linux`, `i386-linux`, `riscv64-linux`...): `linux/<arch>`;
 * 3. a few well-known LmP machine names (`intel-corei7-64`, `raspberrypi4-64`...);
 * 4. otherwise unknown: the caller decides (publish falls back to `--platform`).
 *
 * @module
 */
import { formatPlatform, normalizePlatform, parsePlatform, type Platform } from "./platform.ts";

const ARCH_PREFIX: [RegExp, Platform][] = [
  [/^(amd64|x86_64|x86-64|x64)(-|$)/i, { os: "linux", architecture: "amd64" }],
  [/^(arm64|aarch64|armv8)(-|$)/i, { os: "linux", architecture: "arm64" }],
  [/^(armv6|armel)(-|$)/i, { os: "linux", architecture: "arm", variant: "v6" }],
  [/^(arm|armhf|armv7|armv7l)(-|$)/i, { os: "linux", architecture: "arm", variant: "v7" }],
  [/^(i386|i686|386|x86)(-|$)/i, { os: "linux", architecture: "386" }],
  [/^(riscv64|ppc64le|s390x)(-|$)/i, { os: "linux", architecture: "" }],
];

/** LmP machine names whose architecture the name does not start with. */
const MACHINES: Record<string, Platform> = {
  "intel-corei7-64": { os: "linux", architecture: "amd64" },
  "qemux86-64": { os: "linux", architecture: "amd64" },
  "raspberrypi4-64": { os: "linux", architecture: "arm64" },
  "raspberrypi3-64": { os: "linux", architecture: "arm64" },
  "raspberrypi5": { os: "linux", architecture: "arm64" },
  qemuarm64: { os: "linux", architecture: "arm64" },
  raspberrypi3: { os: "linux", architecture: "arm", variant: "v7" },
  qemuarm: { os: "linux", architecture: "arm", variant: "v7" },
};

/**
 * The platform a hardware id runs, or undefined if the map does not know it.
 *
 * @example
 * ```ts
 * platformForHwid("arm64-linux"); // { os: "linux", architecture: "arm64", variant: "v8" }
 * platformForHwid("my-board", { "my-board": "linux/arm/v7" }); // { os: "linux", architecture: "arm", variant: "v7" }
 * ```
 * @throws {SyntaxError} If an override is not `os/arch[/variant]`.
 */
export function platformForHwid(hwid: string, overrides: Record<string, string> = {}): Platform | undefined {
  const o = overrides[hwid];
  if (o !== undefined) return normalizePlatform(parsePlatform(o));
  for (const [re, p] of ARCH_PREFIX) {
    const m = re.exec(hwid);
    if (m) return normalizePlatform(p.architecture ? p : { os: "linux", architecture: m[1]!.toLowerCase() });
  }
  const known = MACHINES[hwid.toLowerCase()];
  return known ? normalizePlatform(known) : undefined;
}

/** The default hardware id for a platform (`linux/amd64` → `x86_64-linux`, `linux/arm64` → `arm64-linux`). */
export function hwidForPlatform(platform: { architecture: string }): string {
  const a = normalizePlatform({ os: "linux", architecture: platform.architecture }).architecture;
  return a === "amd64" ? "x86_64-linux" : `${a}-linux`;
}

/** `formatPlatform` of the normalized platform (`linux/arm64/v8`), for messages. */
export const describePlatform = (p: Platform): string => formatPlatform(normalizePlatform(p));
