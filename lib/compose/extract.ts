/**
 * Device-side bundle extraction (the install step): a bundle tgz is untrusted
 * input until every file in it is checked against the bundle index, whose
 * digest the signed app manifest pins. Extraction streams the tgz into a temp
 * dir beside the destination and renames it into place only when everything
 * checked out, so a refused or interrupted bundle never leaves a half-written
 * app dir, and nothing is ever written outside it. The tree is synced to disk before that
 * rename (and the rename after it), so a power cut does not leave one either.
 *
 * @module
 */
import { createReadStream, createWriteStream } from "node:fs";
import { link, lstat, mkdir, readdir, rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";
import { MAX_BUNDLE_FILE_BYTES, type BundleIndex } from "./app-format.ts";
import { syncDir, syncTree } from "../fs/atomic-write.ts";

/** The bundle holds something that must not be extracted (escaping path or link, device node, oversized file...). */
export class UnsafeBundleError extends Error {
  override name = "UnsafeBundleError";
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`Cannot extract bundle entry "${path.slice(0, 300)}": ${why}`);
  }
}

/** The bundle and its index disagree: a file differs, is unlisted, or is listed but absent. */
export class BundleIndexMismatchError extends Error {
  override name = "BundleIndexMismatchError";
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`Cannot install bundle file "${path.slice(0, 300)}": ${why}`);
  }
}

/** The bundle is not a readable gzipped tar, or the index is not `{path: "sha256:<hex>"}`. */
export class InvalidComposeBundleError extends Error {
  override name = "InvalidComposeBundleError";
}


export interface ExtractBundleOptions {
  /** Path of the bundle tgz, or a stream of it. */
  bundle: string | ReadableStream<Uint8Array>;
  /** The bundle index (already parsed; its own digest checked by the caller). */
  index: BundleIndex;
  /** The app dir to create or replace, e.g. `<compose_apps_root>/<app>`. Its parent must be writable. */
  dest: string;
  /** Largest single file, bytes. Default MAX_BUNDLE_FILE_BYTES (256 MiB). */
  maxFileSize?: number;
  /** Largest sum of file sizes, bytes. Default 1 GiB (the bundle limit, MAX_BUNDLE_BYTES). */
  maxTotalSize?: number;
  /** Most entries. Default 10 000. */
  maxEntries?: number;
  /** Top-level names the bundle may not use because the device writes them (default `.fioup`). */
  reserved?: string[];
  /** Called with the temp dir after every check passed, before it is renamed to `dest` (to add device files). */
  beforeCommit?: (dir: string) => Promise<void>;
}

export interface ExtractResult {
  files: number;
  bytes: number;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Normalises a bundle path (`./a/b` → `a/b`) or returns why it is unsafe. */
function cleanPath(raw: string): { path: string } | { unsafe: string } {
  if (raw.includes("\0")) return { unsafe: "NUL in path" };
  if (raw.startsWith("/")) return { unsafe: "absolute path" };
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.some((p) => p === "..")) return { unsafe: "path leaves the app dir (..)" };
  if (parts.length === 0) return { path: "" };
  return { path: parts.join("/") };
}

function checkIndex(index: BundleIndex): Map<string, string> {
  if (!index || typeof index !== "object" || Array.isArray(index)) throw new InvalidComposeBundleError("Cannot use bundle index: not a JSON object");
  const out = new Map<string, string>();
  for (const [raw, digest] of Object.entries(index)) {
    const c = cleanPath(raw);
    if ("unsafe" in c || c.path === "") throw new UnsafeBundleError(raw, `bundle index lists an unsafe path (${"unsafe" in c ? c.unsafe : "empty"})`);
    if (typeof digest !== "string" || !DIGEST.test(digest)) throw new InvalidComposeBundleError(`Cannot use bundle index: "${raw.slice(0, 300)}" has no sha256 digest`);
    out.set(c.path, digest);
  }
  return out;
}

/**
 * Extracts a bundle into `dest` (replacing what was there) after checking
 * every entry against `index`. Regular files must be listed with their exact
 * sha256; directories and symlinks that stay inside are allowed; everything
 * else (device nodes, fifos, escaping links, `..`, absolute paths) is refused.
 *
 * @example
 * ```ts
 * const index = JSON.parse(await Bun.file(indexBlob).text());
 * await extractBundle({ bundle: bundleBlob, index, dest: "/var/sota/compose-apps/httpd" });
 * ```
 * @throws {UnsafeBundleError | BundleIndexMismatchError | InvalidComposeBundleError}
 */
export async function extractBundle(opts: ExtractBundleOptions): Promise<ExtractResult> {
  const expected = checkIndex(opts.index);
  const maxFile = opts.maxFileSize ?? MAX_BUNDLE_FILE_BYTES;
  const maxTotal = opts.maxTotalSize ?? 1 << 30;
  const maxEntries = opts.maxEntries ?? 10_000;
  const reserved = new Set(opts.reserved ?? [".fioup"]);

  const parent = dirname(opts.dest);
  await mkdir(parent, { recursive: true });
  await removeStale(parent, basename(opts.dest));
  const tmp = join(parent, `.${basename(opts.dest)}.extract-${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`);
  await mkdir(tmp, { mode: 0o755 });

  const src = typeof opts.bundle === "string" ? createReadStream(opts.bundle) : Readable.fromWeb(opts.bundle as import("node:stream/web").ReadableStream);
  const gunzip = createGunzip();
  const extract = tar.extract();
  const fail = (err: Error) => extract.destroy(err);
  src.on("error", fail);
  gunzip.on("error", (err) => fail(new InvalidComposeBundleError(`Cannot read bundle: not a gzipped tar (${err.message})`)));
  src.pipe(gunzip).pipe(extract);

  const seen = new Map<string, "file" | "dir" | "symlink">();
  const fileDigests = new Map<string, string>();
  let files = 0;
  let bytes = 0;
  let entries = 0;
  /** The whole bundle is read and checked: what fails later is not the bundle. */
  let read = false;

  // A path may only be created under directories this bundle made (never through one of its symlinks).
  const checkParents = (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      const kind = seen.get(p);
      if (kind === "symlink") throw new UnsafeBundleError(path, `parent "${p}" is a symlink`);
      if (kind === "file") throw new UnsafeBundleError(path, `parent "${p}" is a file`);
    }
  };
  // A symlink's target is walked the way the kernel will walk it, one component at a time, from
  // the link's directory: it may never climb above the app dir, nor pass through a symlink (whose
  // text alone cannot say where it leads: `up -> ../..` makes `up/../../etc` escape even though
  // the normalised text stays inside). Paths a target passes through are remembered, so a later
  // entry cannot turn one of them into a symlink either.
  const traversed = new Set<string>();
  const walkLinkTarget = (raw: string, path: string, target: string) => {
    const at = path.split("/").slice(0, -1);
    const parts = target.split("/").filter((p) => p !== "" && p !== ".");
    parts.forEach((part, i) => {
      if (part === "..") {
        if (at.length === 0) throw new UnsafeBundleError(raw, `symlink to "${target}" leaves the app dir`);
        at.pop();
      } else at.push(part);
      const here = at.join("/");
      if (i < parts.length - 1 && here !== "") {
        if (seen.get(here) === "symlink") throw new UnsafeBundleError(raw, `symlink to "${target}" passes through the symlink "${here}"`);
        traversed.add(here);
      }
    });
  };
  const ensureParents = async (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      if (!seen.has(p)) {
        await mkdir(join(tmp, p), { mode: 0o755 });
        seen.set(p, "dir");
      }
    }
  };

  try {
    for await (const entry of extract) {
      const h = entry.header;
      const raw = h.name;
      if (++entries > maxEntries) throw new UnsafeBundleError(raw, `more than ${maxEntries} entries`);
      const c = cleanPath(raw);
      if ("unsafe" in c) throw new UnsafeBundleError(raw, c.unsafe);
      const path = c.path;
      const type = h.type ?? "file";
      if (path === "") {
        if (type !== "directory") throw new UnsafeBundleError(raw, "not a directory");
        entry.resume();
        continue;
      }
      if (reserved.has(path.split("/")[0]!)) throw new UnsafeBundleError(raw, `"${path.split("/")[0]}" is reserved for the device`);
      checkParents(path);
      const prior = seen.get(path);
      if (prior && !(prior === "dir" && type === "directory")) throw new UnsafeBundleError(raw, "duplicate entry");

      switch (type) {
        case "directory": {
          await ensureParents(path);
          if (!prior) await mkdir(join(tmp, path), { mode: 0o755 });
          seen.set(path, "dir");
          entry.resume();
          break;
        }
        case "file":
        case "contiguous-file": {
          const size = h.size ?? 0;
          if (size > maxFile) throw new UnsafeBundleError(raw, `${size} bytes, over the ${maxFile}-byte file limit`);
          if (bytes + size > maxTotal) throw new UnsafeBundleError(raw, `bundle content over the ${maxTotal}-byte limit`);
          const want = expected.get(path);
          if (!want) throw new BundleIndexMismatchError(path, "not listed in the bundle index");
          await ensureParents(path);
          const hasher = new Bun.CryptoHasher("sha256");
          // Keep the exec bits, drop setuid/setgid/sticky and group/other write.
          const mode = ((h.mode ?? 0o644) & 0o755) | 0o600;
          const out = createWriteStream(join(tmp, path), { flags: "wx", mode });
          let written = 0;
          await new Promise<void>((resolve, reject) => {
            out.on("error", reject);
            entry.on("error", reject);
            entry.on("data", (data: unknown) => {
              const chunk = data as Buffer;
              written += chunk.length;
              if (written > maxFile) {
                reject(new UnsafeBundleError(raw, `over the ${maxFile}-byte file limit`));
                return;
              }
              hasher.update(chunk);
              if (!out.write(chunk)) {
                entry.pause();
                out.once("drain", () => entry.resume());
              }
            });
            entry.on("end", () => out.end(resolve));
          }).finally(() => out.destroy());
          const got = `sha256:${hasher.digest("hex")}`;
          if (got !== want) throw new BundleIndexMismatchError(path, `content digest ${got} differs from the bundle index (${want})`);
          seen.set(path, "file");
          fileDigests.set(path, got);
          files++;
          bytes += written;
          break;
        }
        case "symlink": {
          const target = h.linkname ?? "";
          if (!target || target.startsWith("/")) throw new UnsafeBundleError(raw, `symlink to "${target}" leaves the app dir`);
          walkLinkTarget(raw, path, target);
          if (traversed.has(path)) throw new UnsafeBundleError(raw, "an earlier symlink's target passes through this path");
          await ensureParents(path);
          await symlink(target, join(tmp, path));
          seen.set(path, "symlink");
          entry.resume();
          break;
        }
        case "link": {
          const tc = cleanPath(h.linkname ?? "");
          if ("unsafe" in tc || tc.path === "") throw new UnsafeBundleError(raw, `hard link to "${h.linkname}" leaves the app dir`);
          const targetDigest = fileDigests.get(tc.path);
          if (!targetDigest) throw new UnsafeBundleError(raw, `hard link to "${h.linkname}", which is not a file extracted before it`);
          const want = expected.get(path);
          if (!want) throw new BundleIndexMismatchError(path, "not listed in the bundle index");
          if (want !== targetDigest) throw new BundleIndexMismatchError(path, `content digest ${targetDigest} differs from the bundle index (${want})`);
          await ensureParents(path);
          await link(join(tmp, tc.path), join(tmp, path));
          seen.set(path, "file");
          fileDigests.set(path, targetDigest);
          files++;
          entry.resume();
          break;
        }
        default:
          throw new UnsafeBundleError(raw, `${type} entries are not allowed`);
      }
    }
    for (const path of expected.keys()) {
      if (!fileDigests.has(path)) throw new BundleIndexMismatchError(path, "listed in the bundle index but absent from the bundle");
    }
    read = true;
    if (opts.beforeCommit) await opts.beforeCommit(tmp);
    // On disk before it goes live, its files written by beforeCommit too: after a power cut the
    // app dir is the old one or the whole new one, never one whose compose file came back empty
    // (ext4's delayed allocation) while the device's database says it is installed.
    await syncTree(tmp);
    await replaceDir(tmp, opts.dest);
  } catch (err) {
    src.destroy();
    gunzip.destroy();
    extract.destroy();
    await rm(tmp, { recursive: true, force: true });
    if (err instanceof UnsafeBundleError || err instanceof BundleIndexMismatchError || err instanceof InvalidComposeBundleError) throw err;
    // Once the bundle is read, a failure is not the bundle's: beforeCommit's own (a `docker load`
    // that ran out of space says "Error processing tar file") or the final rename's.
    if (!read && err instanceof Error && /tar|header|Unexpected end/i.test(err.message)) {
      throw new InvalidComposeBundleError(`Cannot read bundle: ${err.message}`, { cause: err });
    }
    throw err;
  }
  return { files, bytes };
}

/** Removes `.<name>.extract-<pid>-*` dirs whose process is gone (a crash or power cut mid-extract). */
async function removeStale(parent: string, name: string): Promise<void> {
  const prefix = `.${name}.extract-`;
  for (const entry of await readdir(parent)) {
    if (!entry.startsWith(prefix)) continue;
    const pid = Number.parseInt(entry.slice(prefix.length), 10);
    if (pid === process.pid || (Number.isInteger(pid) && pid > 0 && alive(pid))) continue;
    await rm(join(parent, entry), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Puts `tmp` at `dest`, moving any previous dest aside first and deleting it after. */
async function replaceDir(tmp: string, dest: string): Promise<void> {
  let old: string | undefined;
  try {
    await lstat(dest);
    old = `${tmp}.old`;
    await rename(dest, old);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  try {
    await rename(tmp, dest);
  } catch (err) {
    if (old) await rename(old, dest); // put the previous app back
    throw err;
  }
  await syncDir(dirname(dest));
  if (old) await rm(old, { recursive: true, force: true });
}
