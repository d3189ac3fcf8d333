/**
 * The platform check: every image a target pins must run on the target's
 * hardware. Each hardware id maps to a platform (lib/oci/hwid-platform.ts,
 * overridable); each pinned image offers platforms (an index lists them, a
 * plain image has one in its config). Publish refuses before anything is
 * pushed... or, for what only pushing reveals, before any target is added.
 *
 * @module
 */
import { platformForHwid, describePlatform } from "../../lib/oci/hwid-platform.ts";
import { platformMatches, type Platform } from "../../lib/oci/platform.ts";

/** A hardware id whose platform publish cannot tell. */
export class UnknownHwidPlatformError extends Error {
  override name = "UnknownHwidPlatformError";
}

/** Some pinned image has no platform a hardware id needs; the message lists every gap. */
export class MissingPlatformError extends Error {
  override name = "MissingPlatformError";
  constructor(readonly missing: { image: string; where: string; hwid: string; needs: string; offers: string[] }[]) {
    super(
      `Cannot publish: ${missing.length === 1 ? "an image lacks a platform" : `${missing.length} images lack platforms`} the hardware ids need:\n` +
        missing.map((m) => `  ${m.where}: ${m.image} offers ${m.offers.length ? m.offers.join(", ") : "no platform"}; ${m.hwid} needs ${m.needs}`).join("\n") +
        "\n(build or copy the image for that platform, publish for other --hwid values, or map the hardware id with --hwid-platform HWID=OS/ARCH)",
    );
  }
}

/**
 * The platform of every hardware id.
 *
 * @throws {UnknownHwidPlatformError} If an id is not in the map and there is no fallback.
 */
export function hwidPlatforms(hwids: string[], overrides: Record<string, string>, fallback: Platform | undefined): Map<string, Platform> {
  const out = new Map<string, Platform>();
  for (const h of hwids) {
    let p: Platform | undefined;
    try {
      p = platformForHwid(h, overrides) ?? fallback;
    } catch (err) {
      throw new UnknownHwidPlatformError(`Invalid platform for hardware id ${h}: ${(err as Error).message}`);
    }
    if (!p) {
      throw new UnknownHwidPlatformError(
        `Cannot tell which platform hardware id "${h}" runs: map it with --hwid-platform ${h}=linux/arm64 (or containers.platforms in factory-config.yml), or give --platform`,
      );
    }
    out.set(h, p);
  }
  return out;
}

/** One pinned image and where it is used, as the check sees it. */
export interface PinnedImagePlatforms {
  image: string;
  where: string;
  platforms: Platform[];
}

/**
 * Checks every image against every hardware id.
 *
 * @throws {MissingPlatformError} Listing each image and hardware id that do not match.
 */
export function checkPlatforms(images: PinnedImagePlatforms[], hwids: Map<string, Platform>): void {
  const missing: MissingPlatformError["missing"] = [];
  for (const img of images) {
    for (const [hwid, want] of hwids) {
      if (img.platforms.some((p) => platformMatches(want, p))) continue;
      missing.push({ image: img.image, where: img.where, hwid, needs: describePlatform(want), offers: img.platforms.map(describePlatform) });
    }
  }
  if (missing.length) throw new MissingPlatformError(missing);
}
