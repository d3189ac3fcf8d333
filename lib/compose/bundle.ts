/**
 * The app bundle: a gzipped tar of the app directory with the pinned compose
 * file in place of the original, made reproducible so the same content always
 * gives the same digest (and a re-publish pushes nothing): sorted entries,
 * mtime 0, uid/gid 0, no owner names, modes normalised to 0644/0755, gzip with
 * fixed settings. Alongside it, the bundle index (path → sha256) the device
 * checks every extracted file against. What stays out: what `.composeappignores`
 * excludes, and any paths the caller lists (`exclude`: publish lists what git
 * ignores, since the commit does not hold it), which no `!` rule brings back.
 *
 * @module
 */
import { createGzip } from "node:zlib";
import { lstat, readdir, readFile, rename, rm } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import tar from "tar-stream";
import {
  BUNDLE_DIR_MODE,
  BUNDLE_EXEC_MODE,
  BUNDLE_FILE_MODE,
  IGNORE_FILE_NAME,
  MAX_BUNDLE_BYTES,
  MAX_BUNDLE_FILE_BYTES,
  type BundleIndex,
} from "./app-format.ts";
import { sizeText } from "../cli/bytes.ts";
import { parseIgnoreFile, pathListMatcher, type IgnoreMatcher } from "./ignore.ts";

export class IgnoredComposeFileError extends Error {
  override name = "IgnoredComposeFileError";
}
export class UnsupportedFileError extends Error {
  override name = "UnsupportedFileError";
}
export class BundleTooLargeError extends Error {
  override name = "BundleTooLargeError";
}

/** The name the pinned compose file always has in a bundle (what the device runs). */
export const BUNDLE_COMPOSE_NAME = "docker-compose.yml";

export interface BundleOptions {
  /** The compose file's name in the app dir (docker-compose.yml, compose.yml or compose.yaml). */
  composeFileName: string;
  /** The pinned compose text, shipped as `docker-compose.yml` in place of the original. */
  composeText: string;
  /** Where to write the tgz (written to `<outFile>.partial` first, then renamed). */
  outFile: string;
  /** Size cap of the tgz; default 1 GiB. */
  maxBytes?: number;
  /** Paths relative to the app dir (a directory with or without a trailing `/`) left out whatever `.composeappignores` says: see {@link ListBundleOptions}. */
  exclude?: readonly string[];
}

/** Options of {@link listBundleFiles}. */
export interface ListBundleOptions {
  /**
   * Paths relative to the app dir, taken literally (a directory with or without a trailing `/`),
   * left out whatever `.composeappignores` says. Listing `.composeappignores` itself means its
   * rules do not apply either.
   */
  exclude?: readonly string[];
}

export interface Bundle {
  /** Path of the tgz. */
  path: string;
  digest: string;
  size: number;
  /** Path in bundle → `sha256:<hex>`, keys sorted. */
  index: BundleIndex;
  /** The index blob: JSON with sorted keys. */
  indexBytes: Uint8Array;
  indexDigest: string;
  /** Entry names in tar order (directories end with `/`). */
  entries: string[];
}

interface Entry {
  name: string;
  kind: "dir" | "file";
  /** Source path on disk; absent for the pinned compose file. */
  src?: string;
  content?: Uint8Array;
  size: number;
  mode: number;
}

const sha256hex = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");

/** The bundle index blob bytes: compact JSON with keys sorted. */
export function bundleIndexBytes(index: BundleIndex): Uint8Array {
  const sorted: BundleIndex = {};
  for (const k of Object.keys(index).sort()) sorted[k] = index[k]!;
  return new TextEncoder().encode(JSON.stringify(sorted));
}

/** Reads the app's ignore matcher; an app without `.composeappignores` ignores nothing. */
export async function readIgnoreFile(appDir: string): Promise<IgnoreMatcher> {
  const file = join(appDir, IGNORE_FILE_NAME);
  let text = "";
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return parseIgnoreFile(text, file);
}

/**
 * Lists what a bundle of `appDir` holds, in tar order, applying
 * `.composeappignores` and `opts.exclude`. The ignore file itself is never listed.
 *
 * @example
 * ```ts
 * (await listBundleFiles("containers/web", "compose.yaml", { exclude: [".env"] })).map((e) => e.name); // ["html/", "html/index.html"]
 * ```
 * @throws {IgnoredComposeFileError} If an ignore rule or `opts.exclude` excludes the compose file.
 * @throws {UnsupportedFileError} For symlinks, sockets, devices that are not ignored.
 */
export async function listBundleFiles(appDir: string, composeFileName: string, opts: ListBundleOptions = {}): Promise<Entry[]> {
  const excluded = pathListMatcher(opts.exclude ?? []);
  if (excluded.ignores(composeFileName)) {
    throw new IgnoredComposeFileError(`Cannot bundle ${appDir}: the compose file ${composeFileName} is among the paths left out`);
  }
  const matcher = excluded.ignores(IGNORE_FILE_NAME) ? parseIgnoreFile("") : await readIgnoreFile(appDir);
  if (matcher.ignores(composeFileName)) {
    throw new IgnoredComposeFileError(
      `Cannot bundle ${appDir}: ${IGNORE_FILE_NAME} excludes the compose file ${composeFileName}`,
    );
  }
  const out: Entry[] = [];
  // Returns whether anything under `rel` was included (so excluded dirs holding re-included files still appear).
  const walk = async (rel: string): Promise<boolean> => {
    const names = (await readdir(join(appDir, rel))).sort();
    let any = false;
    for (const name of names) {
      const relPath = rel ? `${rel}/${name}` : name;
      // The ignore file is never shipped; the compose file ships pinned, as docker-compose.yml (added by the caller).
      if (!rel && (name === IGNORE_FILE_NAME || name === composeFileName || name === BUNDLE_COMPOSE_NAME)) continue;
      if (excluded.ignores(relPath)) continue;
      const abs = join(appDir, relPath);
      const st = await lstat(abs);
      const ignored = matcher.ignores(relPath);
      if (st.isDirectory()) {
        if (ignored && !matcher.hasNegations) continue;
        const at = out.length;
        const inner = await walk(relPath);
        if (!ignored || inner) {
          out.splice(at, 0, { name: relPath + "/", kind: "dir", size: 0, mode: BUNDLE_DIR_MODE });
          any = true;
        }
      } else if (ignored) {
        continue;
      } else if (st.isFile()) {
        out.push({
          name: relPath,
          kind: "file",
          src: abs,
          size: st.size,
          mode: st.mode & 0o111 ? BUNDLE_EXEC_MODE : BUNDLE_FILE_MODE,
        });
        any = true;
      } else {
        const what = st.isSymbolicLink() ? "a symbolic link" : "not a regular file or directory";
        throw new UnsupportedFileError(
          `Cannot bundle ${abs}: ${what}; copy the content in or list it in ${IGNORE_FILE_NAME}`,
        );
      }
    }
    return any;
  };
  await walk("");
  return out;
}

function sortEntries(entries: Entry[]): Entry[] {
  // Sort by path; a directory's `/` sorts it right before its contents.
  const key = (e: Entry) => (e.kind === "dir" ? e.name.slice(0, -1) : e.name);
  return entries.sort((a, b) => {
    const ka = key(a).split("/");
    const kb = key(b).split("/");
    for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
      if (ka[i] !== kb[i]) return ka[i]! < kb[i]! ? -1 : 1;
    }
    return ka.length - kb.length;
  });
}

/**
 * Writes the reproducible bundle of `appDir` and computes its index.
 *
 * @example
 * ```ts
 * const b = await createBundle("containers/httpd", {
 *   composeFileName: "docker-compose.yml", composeText: pinned.text, outFile: "/tmp/httpd.tgz" });
 * b.digest; // "sha256:..." — the same for the same content, every time
 * ```
 * @throws {IgnoredComposeFileError} If `.composeappignores` or `opts.exclude` excludes the compose file.
 * @throws {UnsupportedFileError} If the app dir holds a symlink or special file that is not ignored.
 * @throws {BundleTooLargeError} If the tgz would exceed the limit, or a file the limit a device
 *   extracts (MAX_BUNDLE_FILE_BYTES; nothing is left at `outFile`).
 */
export async function createBundle(appDir: string, opts: BundleOptions): Promise<Bundle> {
  const composeBytes = new TextEncoder().encode(opts.composeText);
  const entries = await listBundleFiles(appDir, opts.composeFileName, opts.exclude ? { exclude: opts.exclude } : {});
  // Every device would download the bundle and refuse it at install (extract.ts): refused here, once.
  const huge = entries.find((e) => e.kind === "file" && e.size > MAX_BUNDLE_FILE_BYTES);
  if (huge)
    throw new BundleTooLargeError(
      `Cannot bundle ${appDir}: ${huge.name} is ${sizeText(huge.size)}, over the ${sizeText(MAX_BUNDLE_FILE_BYTES)} a device extracts from an app's bundle per file; ` +
        `list it in ${IGNORE_FILE_NAME} (a file an image is built from goes into the image, and needs no copy in the bundle)`,
    );
  entries.push({ name: BUNDLE_COMPOSE_NAME, kind: "file", content: composeBytes, size: composeBytes.byteLength, mode: BUNDLE_FILE_MODE });
  sortEntries(entries);

  const maxBytes = opts.maxBytes ?? MAX_BUNDLE_BYTES;
  const partial = `${opts.outFile}.partial`;
  const pack = tar.pack();
  const gzip = createGzip({ level: 6, memLevel: 8, windowBits: 15, strategy: 0 });
  const file = createWriteStream(partial);
  const hasher = new Bun.CryptoHasher("sha256");
  let size = 0;
  let failure: Error | undefined;

  const done = new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => {
      failure ??= err;
      pack.destroy(err);
      gzip.destroy();
      file.destroy();
      reject(failure);
    };
    gzip.on("data", (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        fail(new BundleTooLargeError(`Cannot bundle ${appDir}: the bundle exceeds ${maxBytes} bytes`));
        return;
      }
      hasher.update(chunk);
      if (!file.write(chunk)) {
        gzip.pause();
        file.once("drain", () => gzip.resume());
      }
    });
    gzip.on("end", () => file.end());
    gzip.on("error", fail);
    file.on("error", fail);
    pack.on("error", fail);
    file.on("finish", () => (failure ? reject(failure) : resolve()));
  });
  pack.pipe(gzip);

  const index: BundleIndex = {};
  const writeAll = async () => {
    for (const e of entries) {
      if (failure) return;
      const header = { name: e.name, mode: e.mode, mtime: new Date(0), uid: 0, gid: 0, uname: "", gname: "" };
      if (e.kind === "dir") {
        await new Promise<void>((res, rej) => pack.entry({ ...header, type: "directory" }, (err) => (err ? rej(err) : res())));
        continue;
      }
      if (e.content) {
        index[e.name] = "sha256:" + sha256hex(e.content);
        await new Promise<void>((res, rej) =>
          pack.entry({ ...header, type: "file", size: e.size }, Buffer.from(e.content!), (err) => (err ? rej(err) : res())),
        );
        continue;
      }
      const h = new Bun.CryptoHasher("sha256");
      const finished = new Promise<void>((res, rej) => {
        const sink = pack.entry({ ...header, type: "file", size: e.size }, (err) => (err ? rej(err) : res()));
        (async () => {
          try {
            for await (const chunk of Bun.file(e.src!).stream()) {
              h.update(chunk);
              if (!sink.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
                await new Promise<void>((r) => sink.once("drain", () => r()));
              }
            }
            (sink as unknown as { end(): void }).end();
          } catch (err) {
            sink.destroy(err as Error);
          }
        })();
      });
      await finished;
      index[e.name] = "sha256:" + h.digest("hex");
    }
    pack.finalize();
  };

  try {
    await Promise.all([writeAll().catch((err) => {
      pack.destroy(err);
      throw err;
    }), done]);
  } catch (err) {
    await rm(partial, { force: true });
    throw failure ?? err;
  }
  await rename(partial, opts.outFile);
  const indexBytes = bundleIndexBytes(index);
  return {
    path: opts.outFile,
    digest: "sha256:" + hasher.digest("hex"),
    size,
    index: JSON.parse(new TextDecoder().decode(indexBytes)),
    indexBytes,
    indexDigest: "sha256:" + sha256hex(indexBytes),
    entries: entries.map((e) => e.name),
  };
}
