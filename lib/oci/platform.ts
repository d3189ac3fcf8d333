/**
 * Platforms (`linux/arm64/v8`) and the matching rules containerd uses (arm64 means v8, arm
 * means v7 unless said otherwise), so picking an image out of an index agrees with what the
 * engine on the device would pick.
 *
 * @module
 */

/** A target platform. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, string> = { x86_64: "amd64", "x86-64": "amd64", aarch64: "arm64", armhf: "arm", armel: "arm", i386: "386", i686: "386" };

/**
 * Normalizes a platform: architecture aliases (`aarch64` → `arm64`) and default variants
 * (`arm64` → `v8`, `arm` → `v7`).
 */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (architecture === "armhf") variant ??= "v7";
  if (architecture === "armel") variant ??= "v6";
  architecture = ARCH_ALIASES[architecture] ?? architecture;
  if (architecture === "arm64") variant = variant === undefined || variant === "8" ? "v8" : variant;
  if (architecture === "arm") variant = variant === undefined ? "v7" : /^\d+$/.test(variant) ? `v${variant}` : variant;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/**
 * Parses `os/arch[/variant]`.
 *
 * @example
 * ```ts
 * parsePlatform("linux/arm64/v8"); // {os: "linux", architecture: "arm64", variant: "v8"}
 * ```
 * @throws {SyntaxError} If it does not have two or three non-empty parts.
 */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => !x || !/^[\w.-]+$/.test(x))) {
    throw new SyntaxError(`Invalid platform "${s}": expected os/architecture[/variant], e.g. linux/arm64`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** Formats a platform as `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/** True if an index entry's platform is usable on `want` (after normalization). */
export function platformMatches(want: Platform, have: Platform): boolean {
  const a = normalizePlatform(want);
  const b = normalizePlatform(have);
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? "") === (b.variant ?? "");
}

/** The platform this process runs on (`linux/amd64`, `linux/arm64/v8`...). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
  return normalizePlatform({ os: process.platform === "win32" ? "windows" : process.platform, architecture: arch[process.arch] ?? process.arch });
}

/** The `os/architecture/variant` an image config blob says, if it says one (a plain image's only platform). */
export function platformOfConfig(bytes: Uint8Array): Platform | undefined {
  try {
    const c = JSON.parse(new TextDecoder().decode(bytes)) as { os?: unknown; architecture?: unknown; variant?: unknown };
    if (typeof c.os !== "string" || typeof c.architecture !== "string") return undefined;
    return typeof c.variant === "string" && c.variant ? { os: c.os, architecture: c.architecture, variant: c.variant } : { os: c.os, architecture: c.architecture };
  } catch {
    return undefined;
  }
}
