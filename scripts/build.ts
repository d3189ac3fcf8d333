#!/usr/bin/env bun
/**
 * `npm run build`: compiles the three binaries (gateway, fioup, preload) with
 * `bun build --compile` into standalone executables for linux-x64 and linux-arm64:
 * `dist/<name>-linux-<arch>`. Cross-compiling downloads the target's Bun runtime from the npm
 * registry once (bun caches it). A binary whose `<name>/main.ts` does not exist is reported
 * and makes the build fail, after the others are built.
 *
 * Usage: bun scripts/build.ts [--arch x64|arm64]... [--only NAME]... [--if-stale]
 *
 * @module
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { sizeText } from "../lib/cli/bytes.ts";

export const REPO = resolve(import.meta.dir, "..");
export const DIST = join(REPO, "dist");
export const BINARIES = ["gateway", "fioup", "preload"] as const;
export const ARCHES = ["x64", "arm64"] as const;
export type BinaryName = (typeof BINARIES)[number];
export type Arch = (typeof ARCHES)[number];

export class BuildError extends Error {
  override name = "BuildError";
}

/** Path of a built binary: dist/<name>-linux-<arch>. */
export const binaryPath = (name: BinaryName, arch: Arch) => join(DIST, `${name}-linux-${arch}`);

/** Newest modification time (ms) of the sources a binary is compiled from, text imports included. */
function newestSource(): number {
  let newest = 0;
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === "node_modules" || e.name.startsWith(".")) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      // .service: a unit embedded as text (lib/device/fioup.service) changes the binary too.
      else if (/\.(ts|json|service)$/.test(e.name) && !e.name.endsWith(".test.ts")) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of ["lib", ...BINARIES]) walk(join(REPO, d));
  for (const f of ["package.json", "package-lock.json", "tsconfig.json"]) {
    const p = join(REPO, f);
    if (existsSync(p)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** True if dist/<name>-linux-<arch> exists and is newer than every source file. */
export function isFresh(name: BinaryName, arch: Arch): boolean {
  const bin = binaryPath(name, arch);
  return existsSync(bin) && statSync(bin).mtimeMs > newestSource();
}

export interface BuiltBinary {
  name: BinaryName;
  arch: Arch;
  path: string;
  bytes: number;
  /** False when an up-to-date binary was reused (--if-stale). */
  built: boolean;
  seconds: number;
}

export interface BuildResult {
  binaries: BuiltBinary[];
  /** Binaries whose entry point does not exist. */
  missing: BinaryName[];
}

/**
 * Compiles one binary; writes to a temp name and renames, so a concurrent reader never sees
 * a half-written file.
 *
 * @throws {BuildError} If `bun build` fails (message has its output).
 */
export async function buildOne(name: BinaryName, arch: Arch, log: (line: string) => void = () => {}): Promise<BuiltBinary> {
  const entry = join(REPO, name, "main.ts");
  const out = binaryPath(name, arch);
  const tmp = `${out}.tmp-${process.pid}`;
  mkdirSync(DIST, { recursive: true });
  const t0 = performance.now();
  log(`building ${name} for linux-${arch}`);
  const sub = Bun.spawn({
    cmd: [process.execPath, "build", "--compile", `--target=bun-linux-${arch}`, entry, "--outfile", tmp],
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(sub.stdout).text(), new Response(sub.stderr).text(), sub.exited]);
  if (code !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { force: true });
    throw new BuildError(`Cannot build ${name} for linux-${arch}: bun build exited with ${code}\n${stderr}${stdout}`.trimEnd());
  }
  renameSync(tmp, out);
  return { name, arch, path: out, bytes: statSync(out).size, built: true, seconds: (performance.now() - t0) / 1000 };
}

/** Builds the requested binaries (default: all three, both arches). */
export async function build(
  opts: { names?: readonly BinaryName[]; arches?: readonly Arch[]; ifStale?: boolean; log?: (line: string) => void } = {},
): Promise<BuildResult> {
  const result: BuildResult = { binaries: [], missing: [] };
  for (const name of opts.names ?? BINARIES) {
    if (!existsSync(join(REPO, name, "main.ts"))) {
      result.missing.push(name);
      continue;
    }
    for (const arch of opts.arches ?? ARCHES) {
      if (opts.ifStale && isFresh(name, arch)) {
        const path = binaryPath(name, arch);
        result.binaries.push({ name, arch, path, bytes: statSync(path).size, built: false, seconds: 0 });
        continue;
      }
      result.binaries.push(await buildOne(name, arch, opts.log));
    }
  }
  return result;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: "string", multiple: true },
      only: { type: "string", multiple: true },
      "if-stale": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: bun scripts/build.ts [--arch x64|arm64]... [--only gateway|fioup|preload]... [--if-stale]\n\n" +
        "Compiles standalone binaries into dist/<name>-linux-<arch>.\n" +
        "  --arch      target architecture (repeatable; default x64 and arm64)\n" +
        "  --only      binary to build (repeatable; default all three)\n" +
        "  --if-stale  reuse a binary newer than every source file",
    );
    return 0;
  }
  for (const a of values.arch ?? []) {
    if (!(ARCHES as readonly string[]).includes(a)) throw new BuildError(`Cannot build for arch "${a}": use x64 or arm64`);
  }
  for (const n of values.only ?? []) {
    if (!(BINARIES as readonly string[]).includes(n)) throw new BuildError(`Cannot build "${n}": use gateway, fioup or preload`);
  }
  const res = await build({
    names: values.only as BinaryName[] | undefined,
    arches: values.arch as Arch[] | undefined,
    ifStale: values["if-stale"],
    log: (l) => console.error(l),
  });
  for (const b of res.binaries) {
    console.log(`${b.path.slice(REPO.length + 1).padEnd(26)} ${sizeText(b.bytes).padStart(10)}  ${b.built ? `built in ${b.seconds.toFixed(1)} s` : "up to date"}`);
  }
  for (const m of res.missing) console.error(`build: cannot build ${m}: ${m}/main.ts does not exist`);
  return res.missing.length ? 1 : 0;
}

if (import.meta.main) {
  try {
    process.exit(await main(process.argv.slice(2)));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(err instanceof BuildError || (err as Error)?.name === "TypeError" ? 2 : 1);
  }
}
