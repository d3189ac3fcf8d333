/**
 * Turns an assembled root filesystem tree into what the factory flashes: the
 * directory itself, a tar, or an ext4 image built without mounting
 * (`mkfs.ext4 -d`, so no root privileges or loop devices are needed).
 *
 * @module
 */
import type { Dirent } from "node:fs";
import { lstat, mkdir, readdir, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { sizeText } from "../lib/cli/bytes.ts";
import { dirname, join } from "node:path";
import { DEFAULT_DEVICE_PATHS, preloadedTargetPath } from "../lib/device/paths.ts";
import { blockedBy, look, whyFolderNotWritable } from "../lib/fs/paths.ts";
import { freeBytes } from "../lib/fs/free.ts";
import { runTool } from "./_children.ts";

export type OutputFormat = "dir" | "tar" | "ext4";

export class OutputError extends Error {
  override name = "OutputError";
}

async function run(cmd: string[], what: string): Promise<void> {
  const { code, stderr } = await runTool(cmd);
  if (code !== 0) throw new OutputError(`${what} failed (${cmd[0]} exit ${code}): ${stderr}`);
}

/**
 * Walks `dir`: each folder's entries, each regular file once (a hard-linked one once) by its size,
 * and every other entry. Symbolic links are entries, never followed: a base rootfs holds links
 * like /dev/fd -> /proc/self/fd that lead out of the tree or round in a loop.
 */
async function walkTree(
  dir: string,
  v: { folder(entries: Dirent[]): void; file(size: number, allocated: number): void; other?(path: string, entry: Dirent): Promise<void> },
): Promise<void> {
  const seen = new Set<number>();
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    v.folder(entries);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const s = await lstat(p);
        if (s.nlink > 1 && seen.has(s.ino)) continue;
        if (s.nlink > 1) seen.add(s.ino);
        v.file(s.size, s.blocks * 512);
      } else await v.other?.(p, e);
    }
  };
  await walk(dir);
}

/**
 * Total bytes of regular files under dir (a hard-linked file once), the number of entries, and
 * what the tree takes on its file system (the files' blocks, a block per folder).
 */
export async function treeSize(dir: string): Promise<{ bytes: number; entries: number; allocated: number }> {
  let bytes = 0;
  let entries = 0;
  let allocated = 0;
  await walkTree(dir, {
    folder: (list) => void ((entries += list.length), (allocated += BLOCK)),
    file: (size, blocks) => void ((bytes += size), (allocated += blocks)),
  });
  return { bytes, entries, allocated };
}

/** The block a file system gives a file or folder at least (ext4's and tmpfs's usual 4 KiB). */
const BLOCK = 4096;

/** What a file of `size` bytes not yet written will take: whole blocks. */
export const allocatedFor = (size: number): number => Math.ceil(size / BLOCK) * BLOCK;

/** The file that marks a tree as a preload image (the preloaded target), relative to the image root. */
const PRELOADED_TARGET = preloadedTargetPath(DEFAULT_DEVICE_PATHS.storagePath).replace(/^\/+/, "");

/**
 * What a device writes once it has registered and run: its identity (sota.toml, the client
 * certificate and key), its database and the apps it installed. preload writes none of them, and
 * fioup keeps the preloaded target after registering: a tree holding one of these is a device's
 * root, never an image to replace. Relative to the image root.
 */
const DEVICE_STATE = [
  ...["sota.toml", "client.pem", "pkey.pem", "fioup.db"].map((f) => join(DEFAULT_DEVICE_PATHS.storagePath, f)),
  DEFAULT_DEVICE_PATHS.composeAppsRoot,
].map((p) => p.replace(/^\/+/, ""));

/** Which of `paths` (relative to the image root) the folder, tar or ext4 file `out` holds, read without unpacking or mounting it. */
async function foundIn(out: string, format: OutputFormat, paths: string[]): Promise<string[]> {
  if (format === "dir") return (await Promise.all(paths.map(async (p) => ((await lstat(join(out, p)).catch(() => undefined)) ? [p] : [])))).flat();
  const list = async (cmd: string[]) => {
    const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
    const [code, text] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
    return { code, text };
  };
  if (format === "tar") {
    // tar lists those of the names it holds (and exits 2 for the others).
    const { text } = await list(["tar", "-tf", out, ...paths.map((p) => `./${p}`)]);
    const listed = new Set(text.split("\n").map((l) => l.replace(/^\.\//, "").replace(/\/$/, "")));
    return paths.filter((p) => listed.has(p));
  }
  const found: string[] = [];
  for (const p of paths) {
    // debugfs exits 0 whether or not it found the file; its stat prints the inode when it did.
    const { code, text } = await list(["debugfs", "-R", `stat /${p}`, out]);
    if (code === 0 && /^Inode:/m.test(text)) found.push(p);
  }
  return found;
}

/**
 * Refuses an output path whose current contents would be lost: a directory
 * that is neither empty nor an earlier preload image (`--out /` must never
 * mean "replace the root filesystem"), a directory where a file goes, a
 * file (or device) that is neither empty nor an earlier image of the same format,
 * and an earlier image that a device has booted and registered with (its identity and state).
 *
 * @throws {OutputError}
 */
export async function checkOutputPath(out: string, format: OutputFormat): Promise<void> {
  const s = await stat(out).catch(() => undefined);
  if (!s) return;
  const what = format === "dir" ? "the image directory" : `the ${format} image`;
  if (format !== "dir") {
    if (s.isDirectory()) throw new OutputError(`Cannot write the ${format} image to ${out}: it is a directory`);
    if (!s.isFile()) throw new OutputError(`Cannot write the ${format} image to ${out}: it is not a regular file (nothing was changed)`);
    if (s.size === 0) return;
  } else {
    if (!s.isDirectory()) throw new OutputError(`Cannot write the image directory to ${out}: a file is in the way`);
    if ((await readdir(out)).length === 0) return;
  }
  const [earlier, ...state] = await foundIn(out, format, [PRELOADED_TARGET, ...DEVICE_STATE]);
  if (earlier !== PRELOADED_TARGET) {
    throw new OutputError(
      format === "dir"
        ? `Cannot write the image directory to ${out}: it is not empty and holds no earlier preload image (nothing was changed)`
        : `Cannot write the ${format} image to ${out}: it exists and is no earlier preload ${format} image (nothing was changed)`,
    );
  }
  if (state.length) {
    throw new OutputError(
      `Cannot write ${what} to ${out}: it is the root of a device that has registered or run (it holds ${state.map((p) => `/${p}`).join(", ")}, which preload never writes), not only an earlier preload image; nothing was changed (give an empty --out, or remove it yourself if it is to go)`,
    );
  }
}

/**
 * Why nothing can be written at `out`, or undefined if it can: preload makes the folders above
 * it that are missing, so the nearest one that exists must be a folder preload may write in, on
 * a file system that is not read-only. Asked before the gateway is, so a mistyped or read-only
 * --out fails at once instead of after the download.
 */
export async function whyCannotWriteAt(out: string): Promise<string | undefined> {
  let dir = dirname(out);
  for (;;) {
    const st = await look(dir).catch(() => undefined);
    if (st === "blocked" || (st && !st.isDirectory())) return await blockedBy(out);
    if (st) break;
    if (dir === dirname(dir)) return undefined;
    dir = dirname(dir);
  }
  return await whyFolderNotWritable(dir);
}

/** What preload is about to write does not fit in the free space of its file system. */
export class ImageNoSpaceError extends OutputError {
  override name = "ImageNoSpaceError";
  /**
   * @param detail What needs how much, and how much is free ("the tar file needs at least 1.0 MiB, 96.0 KiB free").
   * @param o.where A folder on the file system that is full, when it is not the one beside --out.
   * @param o.left What became of --out, when it is not as it was.
   */
  constructor(readonly detail: string, readonly o: { where?: string; left?: string } = {}) {
    super(`No space left: ${detail}`);
  }
}

/** Bytes preload is about to write on the file system of `dir`; `freed`: bytes there it removes first (an earlier image it replaces). */
export interface RoomNeed {
  dir: string;
  bytes: number;
  what: string;
  freed?: number;
}

/**
 * Refuses, before anything is written or removed, what does not fit: the needs on one file system
 * are added up and compared with its free space, plus what replacing an earlier image there frees.
 *
 * @throws {ImageNoSpaceError} Naming the file system (by a folder on it), what needs how much, and what is free.
 */
export async function checkRoom(needs: RoomNeed[]): Promise<void> {
  const byDevice = new Map<number, { dir: string; bytes: number; freed: number; what: string[] }>();
  for (const n of needs) {
    if (n.bytes === 0) continue;
    let dir = n.dir;
    let st = await stat(dir).catch(() => undefined);
    while (!st && dir !== dirname(dir)) st = await stat((dir = dirname(dir))).catch(() => undefined);
    if (!st) continue;
    const g = byDevice.get(st.dev) ?? { dir: n.dir, bytes: 0, freed: 0, what: [] };
    byDevice.set(st.dev, g);
    g.bytes += n.bytes;
    g.freed += n.freed ?? 0;
    g.what.push(n.what);
  }
  for (const g of byDevice.values()) {
    const free = await freeBytes(g.dir);
    if (free === undefined || free + g.freed >= g.bytes) continue;
    const replaced = g.freed ? ` and ${sizeText(g.freed)} in the earlier image it replaces` : "";
    throw new ImageNoSpaceError(`${g.what.join(" and ")} ${g.what.length > 1 ? "need" : "needs"} ${sizeText(g.bytes)} in the file system of ${g.dir}, which has ${sizeText(free)} free${replaced}`, {
      where: g.dir,
      left: g.freed ? `nothing was changed: the earlier image in ${g.dir} is as it was` : undefined,
    });
  }
}

/** What a run is about to add to the tree (and fetch), for {@link imageNeeds}. */
export interface ImageAdds {
  /** The tree: the base copy already in it. */
  tree: string;
  out: string;
  format: OutputFormat;
  /** The blobs to place, each file's size. */
  blobs: number[];
  /** Bytes of the blobs to download, and where they go. */
  toFetch: number;
  cacheDir: string;
  /** Whether placed blobs are copies (else hard links to the cache's files). */
  copied: boolean;
  /** Other files added to the tree (the fioup binary). */
  files: number[];
}

/**
 * Everything a run will write, by file system, known once the blobs are: the downloads, the blobs
 * placed and the fioup binary in the tree, and the image where --out is (on another file system
 * than the tree, the whole tree again, less the earlier image it replaces). For {@link checkRoom}.
 */
export async function imageNeeds(a: ImageAdds): Promise<RoomNeed[]> {
  const now = await treeSize(a.tree);
  const placed = a.blobs.reduce((n, b) => n + allocatedFor(b), 0);
  const files = a.files.reduce((n, b) => n + allocatedFor(b), 0);
  const image = now.allocated + placed + files;
  // Named by the folders the user gave: the work folder beside --out goes with the run.
  const work = dirname(a.tree);
  const shown = (p: string) => (p === work || p.startsWith(`${work}/`) ? dirname(a.out) : p);
  const needs: RoomNeed[] = [
    { dir: shown(a.cacheDir), bytes: a.toFetch, what: "the blobs to fetch" },
    { dir: shown(a.tree), bytes: (a.copied ? placed : 0) + files, what: "the image's tree" },
  ];
  if (a.format !== "dir") {
    // At least the content (an ext4 file of a fixed --size is sparse where it is empty).
    needs.push({ dir: dirname(a.out), bytes: image, what: `the ${a.format} file` });
  } else {
    const there = await stat(a.out).catch(() => undefined);
    const treeDevice = (await stat(a.tree)).dev;
    // Into an --out on another file system (a mounted partition) the tree is copied; on the same one it is renamed.
    if (there && there.dev !== treeDevice) {
      const earlier = await treeSize(a.out);
      needs.push({ dir: a.out, bytes: image, freed: earlier.entries ? earlier.allocated : 0, what: "the image" });
    }
  }
  return needs;
}

/** The image's content does not fit in the ext4 size given with --size. */
export class Ext4SizeError extends OutputError {
  override name = "Ext4SizeError";
}

/** mkfs.ext4 as preload runs it, for the image (`tree` given) and for the empty probes below. */
const mkfsExt4 = (file: string, o: { tree?: string; probe?: boolean } = {}): string[] => [
  "mkfs.ext4", "-q", "-F", "-L", "rootfs",
  // A probe's layout is the image's; only the zeroing of its journal and inode tables is skipped.
  "-E", o.probe ? "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard" : "root_owner=0:0",
  ...(o.tree ? ["-d", o.tree] : []),
  file,
];

/** What an ext4 file system of a given size holds: its block size, and the blocks and inodes an empty one has free. */
interface Ext4Room {
  blockSize: number;
  freeBlocks: number;
  freeInodes: number;
}

/**
 * The room in an ext4 of `bytes`, read (dumpe2fs) from an empty one that mkfs.ext4 makes in the
 * sparse file `probe`, removed after: mkfs's layout (block size, journal, inode tables) is its
 * own to choose, so it is asked rather than modelled. Undefined if mkfs refuses that size.
 */
async function ext4Room(bytes: number, probe: string): Promise<Ext4Room | undefined> {
  try {
    await writeFile(probe, "");
    await truncate(probe, bytes);
    if ((await runTool(mkfsExt4(probe, { probe: true }))).code !== 0) return undefined;
    const proc = Bun.spawn(["dumpe2fs", "-h", probe], { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
    const [text, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    const field = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)$`, "m").exec(text)?.[1]);
    const room = { blockSize: field("Block size"), freeBlocks: field("Free blocks"), freeInodes: field("Free inodes") };
    if (code !== 0 || !Object.values(room).every(Number.isSafeInteger)) throw new OutputError(`Reading the layout of an empty ext4 of ${bytes} bytes failed (dumpe2fs exit ${code})`);
    return room;
  } finally {
    await rm(probe, { force: true });
  }
}

/** Blocks in one extent, and extents an inode holds without an index block (ext4's on-disk limits). */
const EXTENT_BLOCKS = 32768;
const INODE_EXTENTS = 4;

/**
 * The blocks and inodes `tree` takes in an ext4 of `blockSize` (a hard-linked file once), with
 * `extraFiles` more files of these sizes (blobs not yet fetched): each file in whole blocks, an
 * index block for a file of many extents, each folder's entries, a long symlink's target.
 */
async function ext4Needs(tree: string, blockSize: number, extraFiles: number[] = []): Promise<{ blocks: number; inodes: number }> {
  let blocks = 0;
  let inodes = 0;
  const file = (size: number) => {
    const b = Math.ceil(size / blockSize);
    const extents = Math.ceil(b / EXTENT_BLOCKS);
    blocks += b + (extents > INODE_EXTENTS ? Math.ceil(extents / ((blockSize - 12) / 12)) : 0);
    inodes++;
  };
  await walkTree(tree, {
    folder(entries) {
      // An entry is 8 bytes and its name padded to 4; a folder of more than one block has an index block too.
      const dirBlocks = Math.ceil(entries.reduce((n, e) => n + 8 + Math.ceil(e.name.length / 4) * 4, 24) / blockSize);
      blocks += dirBlocks + (dirBlocks > 1 ? 1 : 0);
      inodes++;
    },
    file,
    async other(path, e) {
      // A symlink's target of 60 bytes or more takes a block; devices, fifos and sockets only an inode.
      if (e.isSymbolicLink() && (await lstat(path)).size >= 60) blocks++;
      inodes++;
    },
  });
  extraFiles.forEach(file);
  // mkfs -d places files as it goes: room for what it spends beyond the count above.
  return { blocks: Math.ceil(blocks * 1.01) + 64, inodes };
}

const MiB = 1024 * 1024;

/**
 * Refuses, before the image is written (and, with `extraFiles`, before they are fetched), content
 * that does not fit in an ext4 of `size` bytes, saying what it takes and the --size that holds it.
 * `probe` is a file it may write (and removes) for the empty file systems it asks mkfs about: one
 * the command removes if it is stopped.
 *
 * @throws {Ext4SizeError}
 */
export async function checkExt4Size(tree: string, size: number, probe: string, extraFiles: number[] = []): Promise<void> {
  // What the tree takes depends only on the block size mkfs picks (1 KiB for small file systems, else 4 KiB): counted once per block size.
  const needs = new Map<number, Promise<{ blocks: number; inodes: number }>>();
  const fits = async (bytes: number): Promise<{ room?: Ext4Room; need?: { blocks: number; inodes: number }; ok: boolean }> => {
    const room = await ext4Room(bytes, probe);
    if (!room) return { ok: false };
    if (!needs.has(room.blockSize)) needs.set(room.blockSize, ext4Needs(tree, room.blockSize, extraFiles));
    const need = await needs.get(room.blockSize)!;
    return { room, need, ok: need.blocks <= room.freeBlocks && need.inodes <= room.freeInodes };
  };
  const at = await fits(size);
  if (at.ok) return;
  // The smallest size in whole MiB that holds it: doubled until it does, then halved back.
  let lo = Math.floor(size / MiB);
  let hi = Math.max(lo + 1, 2);
  while (!(await fits(hi * MiB)).ok) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await fits(mid * MiB)).ok) hi = mid;
    else lo = mid;
  }
  const { room, need } = at;
  const why = !room || !need
    ? ": mkfs.ext4 makes no file system that small"
    : need.blocks > room.freeBlocks
      ? `: its content takes ${sizeText(need.blocks * room.blockSize)} in ext4, and an ext4 of that size holds ${sizeText(room.freeBlocks * room.blockSize)}`
      : `: its ${need.inodes} files and folders are more than the ${room.freeInodes} an ext4 of that size holds`;
  throw new Ext4SizeError(`The image does not fit in --size ${sizeText(size)}${why}; it needs --size ${hi}M or more`);
}

/** Where the unfinished tar or ext4 file is written before it is renamed to `out`. */
export const partialPath = (out: string): string => `${out}.partial`;

/**
 * Writes `tree` to `out` in the given format. For "dir" the tree is moved into
 * place (into the folder `out` if it is there, a mount point included); for "tar" and "ext4"
 * the tree is left as it is and the caller removes it. `onReplace` is told when the folder `out`
 * is about to be emptied (`held`: it holds an earlier image), from which point a stop leaves it
 * empty (WorkDir.replacingOut).
 */
export async function writeOutput(tree: string, out: string, format: OutputFormat, o: { size?: number; onReplace?: (held: boolean) => void } = {}): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  if (format === "dir") {
    const there = await stat(out).catch(() => undefined);
    if (!there) return await rename(tree, out);
    // An empty folder or an earlier image (checkOutputPath): often the mount point of the
    // device's root partition, which can be neither removed nor renamed onto. Its contents are
    // replaced instead, by rename on the same file system, else copied whole.
    const empty = async () => {
      for (const name of await readdir(out)) await rm(join(out, name), { recursive: true, force: true });
    };
    const held = (await readdir(out)).length > 0;
    // Said before the earlier image is removed, in the sizes now known exactly.
    if (there.dev !== (await stat(tree)).dev) {
      await checkRoom([{ dir: out, bytes: (await treeSize(tree)).allocated, freed: held ? (await treeSize(out)).allocated : 0, what: "the image" }]);
    }
    try {
      o.onReplace?.(held);
      await empty();
      for (const name of await readdir(tree)) {
        try {
          await rename(join(tree, name), join(out, name));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
          const { code, stderr } = await runTool(["cp", "-a", "--reflink=auto", join(tree, name), join(out, name)]);
          if (/No space left|Disk quota/.test(stderr)) {
            throw new ImageNoSpaceError(`the image does not fit in the file system of ${out}`, {
              where: out,
              left: `${out} is left empty${held ? ": the earlier image it held was removed to make room" : ""}`,
            });
          }
          if (code !== 0) throw new OutputError(`Copying the image into ${out} failed (cp exit ${code}): ${stderr}`);
        }
      }
    } catch (e) {
      // Never a half image that looks like one: the folder is left empty, as a fresh --out.
      await empty().catch(() => {});
      throw e;
    }
    return;
  }
  const tmp = partialPath(out);
  await rm(tmp, { force: true });
  // The tar or ext4 file holds at least the tree's bytes: said before the tool fails half-way.
  const { bytes, entries } = await treeSize(tree);
  const free = await freeBytes(dirname(out));
  if (free !== undefined && free < bytes) throw new ImageNoSpaceError(`the ${format} file needs at least ${sizeText(bytes)}, ${sizeText(free)} free`);
  if (format === "tar") {
    // GNU tar with numeric owners: the image is for another machine.
    await run(["tar", "--numeric-owner", "--sort=name", "-C", tree, "-cf", tmp, "."], "Writing the tar");
  } else if (o.size !== undefined) {
    // Exactly the partition's size: mkfs fills the file it is given.
    await checkExt4Size(tree, o.size, tmp);
    await writeFile(tmp, "");
    await truncate(tmp, o.size);
    const { code, stderr } = await runTool(mkfsExt4(tmp, { tree }));
    if (code !== 0 && /allocate|No space left|Could not/i.test(stderr)) throw new Ext4SizeError(`The image does not fit in --size ${sizeText(o.size)}: mkfs.ext4 ran out of room (${stderr}); give a larger --size`);
    if (code !== 0) throw new OutputError(`Building the ext4 image failed (mkfs.ext4 exit ${code}): ${stderr}`);
  } else {
    // Room for metadata: 4 KiB per entry, 20% slack, at least 64 MiB.
    const sizeKiB = Math.max(64 * 1024, Math.ceil(((bytes + entries * 4096) * 1.2) / 1024));
    await run([...mkfsExt4(tmp, { tree }), `${sizeKiB}K`], "Building the ext4 image");
  }
  await rename(tmp, out);
}
