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

/** Architectures whose CPUs run the older variants too (arm v7 runs v6 and v5; amd64 v3 runs v2 and v1): the variant's number ranks them. */
const OLDER_VARIANTS_RUN = new Set(["arm", "amd64"]);

/** A variant's number (`v7` → 7; none, on amd64, is v1); undefined if it has none. */
const variantNumber = (architecture: string, variant: string | undefined): number | undefined =>
  variant === undefined ? (architecture === "amd64" ? 1 : undefined) : /^v(\d+)$/.exec(variant) ? Number(variant.slice(1)) : undefined;

/**
 * How well an index entry's platform `have` suits `want`, as containerd ranks them: 0 for the
 * same platform, 1, 2... for each older variant back that the CPU still runs (an arm v7 device
 * runs a v6-only image, as `docker pull` there picks it), undefined if it cannot run it.
 */
export function platformRank(want: Platform, have: Platform): number | undefined {
  const a = normalizePlatform(want);
  const b = normalizePlatform(have);
  if (a.os !== b.os || a.architecture !== b.architecture) return undefined;
  if ((a.variant ?? "") === (b.variant ?? "")) return 0;
  if (!OLDER_VARIANTS_RUN.has(a.architecture)) return undefined;
  const wantN = variantNumber(a.architecture, a.variant);
  const haveN = variantNumber(b.architecture, b.variant);
  return wantN !== undefined && haveN !== undefined && haveN < wantN ? wantN - haveN : undefined;
}

/** True if an index entry's platform is usable on `want` (after normalization): {@link platformRank}. */
export function platformMatches(want: Platform, have: Platform): boolean {
  return platformRank(want, have) !== undefined;
}

/** The entries usable on `want`, best first (the same platform, then each older variant it runs). */
export function byPlatformRank<T extends { platform?: Platform }>(want: Platform, entries: readonly T[]): T[] {
  const ranked = entries.flatMap((e) => {
    const r = e.platform ? platformRank(want, e.platform) : undefined;
    return r === undefined ? [] : [{ e, r }];
  });
  return ranked.sort((x, y) => x.r - y.r).map((x) => x.e);
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
