/**
 * The platform an image is for, which picks each app's image from its index and which the
 * --fioup binary must match. --platform says it; else the factory's hardware id map
 * (factory-config `containers.platforms`) or the hardware id's own name ("arm64-linux"); else,
 * when the factory builds for one architecture only, that one (it runs on every device);
 * else linux/amd64. Said with what named it, for messages that tell which flag to change.
 *
 * @module
 */
import type { Section } from "../lib/factory-config/index.ts";
import { platformsOf } from "../lib/factory-config/index.ts";
import { platformForHwid } from "../lib/oci/hwid-platform.ts";
import type { Platform } from "../lib/oci/platform.ts";

/**
 * @param o.platform --platform, parsed. @param o.hwid --hwid. @param o.containers The factory config's containers section.
 * @returns The platform, and `from`: the flag that named it ("--platform", "--hwid rpi4").
 */
export function imagePlatform(o: { platform?: Platform; hwid: string; containers: Section | undefined }): { platform: Platform; from: string } {
  const { byHwid, built } = platformsOf(o.containers);
  // A factory that builds for one architecture runs it on every device.
  const platform = o.platform ?? platformForHwid(o.hwid, byHwid) ?? (built.length === 1 ? built[0] : undefined) ?? { os: "linux", architecture: "amd64" };
  return { platform, from: o.platform ? "--platform" : `--hwid ${o.hwid}` };
}
