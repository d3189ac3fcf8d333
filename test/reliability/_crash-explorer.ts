/**
 * A small crash-state explorer in the spirit of ALICE ("All File Systems Are Not Created
 * Equal", OSDI 2014). This kernel has no dm-log-writes or dm-flakey, so instead of recording
 * block writes we record system calls: a program runs under
 * `strace -f -y -xx -s 1048576 -e trace=<FILE_SYSCALLS>`, and the trace is replayed against an
 * abstract file system that knows what a power cut may lose:
 *
 * - a file's bytes are durable only up to its last fsync/fdatasync; writes after it may be
 *   dropped, or torn (the last one half written);
 * - a directory entry change (create, rename, unlink, link) is durable only once its directory
 *   was fsynced; before that a power cut may undo it.
 *
 * From the replay come (1) the order checks (each rename of a written file preceded by an fsync
 * of that file, and followed by an fsync of its directory) and (2) crash states: for each
 * moment just before a durability-relevant call, the trees a power cut could leave (nothing
 * pending kept; directory changes kept but file data lost; everything kept but the last write
 * torn), deduplicated by content. {@link materialize} writes one into a directory so the
 * program's own recovery can run on it.
 *
 * Only paths under the given root are modelled; directories are always recreated (mkdir
 * durability is not explored).
 *
 * @module
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

/** The system calls the explorer reads; pass to `strace -e trace=`. */
export const FILE_SYSCALLS =
  "openat,open,creat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,ftruncate,link,linkat,lseek";

/** The strace command line that records what the explorer needs. */
export function straceCommand(traceFile: string, cmd: string[]): string[] {
  return ["strace", "-f", "-y", "-qq", "-xx", "-s", "1048576", "-e", `trace=${FILE_SYSCALLS}`, "-e", "signal=none", "-o", traceFile, ...cmd];
}

export interface Call {
  pid: number;
  name: string;
  args: string[];
  ret: string;
}

const HEX = /((?:\\x[0-9a-f]{2})+)/g;
const decode = (s: string) => Buffer.from(s.replace(/\\x/g, ""), "hex");

/** Parses an `strace -xx` trace (joining `<unfinished ...>` and `resumed` halves). */
export function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<number, string>();
  for (const raw of text.split("\n")) {
    // "PID call(...)" with -o and -f; "[pid PID] call(...)" on a terminal; no prefix before the first fork.
    let m = /^(?:\[pid\s+(\d+)\]|(\d+))?\s*(.*)$/.exec(raw);
    if (!m || !m[3]) continue;
    const pid = Number(m[1] ?? m[2] ?? 0);
    let line = m[3];
    if (line.endsWith("<unfinished ...>")) {
      pending.set(pid, line.slice(0, -"<unfinished ...>".length));
      continue;
    }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed) {
      line = (pending.get(pid) ?? "") + resumed[1]!;
      pending.delete(pid);
    }
    m = /^(\w+)\((.*)\)\s+=\s+(.*)$/.exec(line);
    if (!m) continue;
    calls.push({ pid, name: m[1]!, args: splitArgs(m[2]!), ret: m[3]! });
  }
  return calls;
}

function splitArgs(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let depth = 0;
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (inStr) {
      cur += ch;
      if (ch === "\\") cur += s[++i] ?? "";
      else if (ch === '"') inStr = false;
      continue;
    }
    if (ch === '"') inStr = true;
    else if (ch === "[" || ch === "{" || ch === "<") depth++;
    else if (ch === "]" || ch === "}" || ch === ">") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** `5</path>` → fd 5 and its path (as strace -y shows it, decoded). */
function fdArg(a: string | undefined): { fd: number; path: string } | undefined {
  const m = /^(-?\d+|AT_FDCWD)(?:<(.*)>)?$/.exec(a ?? "");
  if (!m) return undefined;
  return { fd: m[1] === "AT_FDCWD" ? -100 : Number(m[1]), path: m[2] ? decode(m[2]).toString() : "" };
}
const strArg = (a: string | undefined): Buffer => decode(/^"(.*)"(\.\.\.)?$/.exec(a ?? "")?.[1] ?? "");
const resolveAt = (dirfd: string | undefined, p: string): string => (p.startsWith("/") ? p : join(fdArg(dirfd)?.path ?? "/", p));
const retNum = (ret: string) => Number.parseInt(ret, 10);
const retPath = (ret: string) => fdArg(ret.split(" ")[0]);

interface Inode {
  id: number;
  data: Buffer;
  durable: Buffer;
  /** Writes since the last fsync, to build torn states. */
  pending: { off: number; bytes: Buffer; truncate?: number }[];
}

type NsOp = { dir: string; apply: (ns: Map<string, Inode>) => void; what: string };

/** One possible on-disk tree after a power cut: relative path → content. */
export interface CrashState {
  /** Index of the call before which the power was cut. */
  at: number;
  /** What was cut: e.g. "before fsync(blobs/sha256/ab..): directory changes kept, file data lost". */
  label: string;
  files: Map<string, Buffer>;
}

export interface Violation {
  kind: "rename-before-fsync" | "rename-not-durable" | "state-not-synced";
  path: string;
  detail: string;
}

export interface Exploration {
  calls: number;
  renames: number;
  fsyncs: number;
  violations: Violation[];
  states: CrashState[];
  /** Crash points looked at (before dedup). */
  points: number;
}

/**
 * Replays `calls` over the tree at `root` as it was before the program ran (`initial`: relative
 * path → content) and returns the order violations and the distinct crash states.
 *
 * @param opts.stateFiles relative paths whose every write must be fsynced before the next
 *   rename anywhere (e.g. the SQLite database and its WAL).
 */
export function explore(root: string, initial: Map<string, Buffer>, calls: Call[], opts: { stateFiles?: RegExp } = {}): Exploration {
  let nextId = 1;
  const mk = (data: Buffer): Inode => ({ id: nextId++, data, durable: data, pending: [] });
  const vol = new Map<string, Inode>();
  for (const [p, b] of initial) vol.set(p, mk(b));
  let dur = new Map(vol);
  const nsPending: NsOp[] = [];
  const pos = new Map<string, number>();
  const inside = (p: string) => p === root || p.startsWith(root + "/");
  const rel = (p: string) => relative(root, p);
  const violations: Violation[] = [];
  const states: CrashState[] = [];
  const seen = new Set<string>();
  const renamed: { path: string; dir: string; at: number }[] = [];
  let renames = 0;
  let fsyncs = 0;
  let points = 0;

  const inodeOf = (fdPath: string) => (inside(fdPath) ? vol.get(rel(fdPath)) : undefined);
  const write = (ino: Inode, off: number, bytes: Buffer) => {
    const end = off + bytes.length;
    const data = end > ino.data.length ? Buffer.concat([ino.data, Buffer.alloc(end - ino.data.length)]) : Buffer.from(ino.data);
    bytes.copy(data, off);
    ino.data = data;
    ino.pending.push({ off, bytes });
  };
  const truncate = (ino: Inode, len: number) => {
    ino.data = len <= ino.data.length ? ino.data.subarray(0, len) : Buffer.concat([ino.data, Buffer.alloc(len - ino.data.length)]);
    ino.pending.push({ off: 0, bytes: Buffer.alloc(0), truncate: len });
  };
  const nsOp = (dir: string, what: string, apply: (ns: Map<string, Inode>) => void) => nsPending.push({ dir, what, apply });

  /** Records the crash states possible just before call `at`. */
  const snapshot = (at: number, before: string) => {
    points++;
    const withNs = new Map(dur);
    for (const op of nsPending) op.apply(withNs);
    const variants: [string, Map<string, Inode>, (i: Inode) => Buffer][] = [
      ["nothing pending kept", dur, (i) => i.durable],
      ["directory changes kept, file data since the last fsync lost", withNs, (i) => i.durable],
      ["everything kept, the last unsynced write torn", withNs, torn],
    ];
    for (const [label, ns, content] of variants) {
      const files = new Map<string, Buffer>();
      for (const [p, ino] of ns) files.set(p, content(ino));
      const key = [...files].sort(([a], [b]) => a.localeCompare(b)).map(([p, b]) => `${p}:${Bun.hash(b)}`).join("|");
      if (seen.has(key)) continue;
      seen.add(key);
      states.push({ at, label: `before ${before}: ${label}`, files });
    }
  };

  calls.forEach((c, i) => {
    const fail = c.ret.startsWith("-1");
    if (fail) return;
    switch (c.name) {
      case "open":
      case "openat":
      case "creat": {
        const path = c.name === "openat" ? resolveAt(c.args[0], strArg(c.args[1]).toString()) : strArg(c.args[0]).toString();
        const flags = (c.name === "openat" ? c.args[2] : c.args[1]) ?? "";
        const fd = retPath(c.ret);
        if (!inside(path) || !fd) return;
        let ino = vol.get(rel(path));
        const dir = dirname(rel(path));
        if (!ino && (flags.includes("O_CREAT") || c.name === "creat")) {
          ino = mk(Buffer.alloc(0));
          const created = ino;
          vol.set(rel(path), created);
          nsOp(dir, `create ${rel(path)}`, (ns) => ns.set(rel(path), created));
        }
        if (!ino) return;
        if ((flags.includes("O_TRUNC") || c.name === "creat") && ino.data.length) truncate(ino, 0);
        pos.set(`${ino.id}:${fd.fd}`, flags.includes("O_APPEND") ? -1 : 0);
        return;
      }
      case "write":
      case "pwrite64":
      case "writev":
      case "pwritev":
      case "pwritev2": {
        const fd = fdArg(c.args[0]);
        const ino = fd && inodeOf(fd.path);
        if (!fd || !ino) return;
        const n = retNum(c.ret);
        let bytes: Buffer;
        if (c.name.includes("writev")) {
          bytes = Buffer.concat([...(c.args[1] ?? "").matchAll(/iov_base="((?:\\x[0-9a-f]{2})*)"/g)].map((m) => decode(m[1]!)));
        } else bytes = strArg(c.args[1]);
        bytes = bytes.subarray(0, n);
        const key = `${ino.id}:${fd.fd}`;
        let off: number;
        if (c.name.startsWith("pwrite")) off = Number(c.args[c.name === "pwrite64" ? 3 : 3]);
        else {
          const p = pos.get(key) ?? 0;
          off = p < 0 ? ino.data.length : p;
          if (p >= 0) pos.set(key, off + n);
        }
        write(ino, off, bytes);
        return;
      }
      case "lseek": {
        const fd = fdArg(c.args[0]);
        const ino = fd && inodeOf(fd.path);
        if (fd && ino) pos.set(`${ino.id}:${fd.fd}`, retNum(c.ret));
        return;
      }
      case "ftruncate": {
        const fd = fdArg(c.args[0]);
        const ino = fd && inodeOf(fd.path);
        if (ino) truncate(ino, Number(c.args[1]));
        return;
      }
      case "fsync":
      case "fdatasync": {
        const fd = fdArg(c.args[0]);
        if (!fd || !inside(fd.path)) return;
        fsyncs++;
        const r = rel(fd.path) || ".";
        snapshot(i, `${c.name}(${r})`);
        const ino = vol.get(r);
        if (ino) {
          ino.durable = ino.data;
          ino.pending = [];
          return;
        }
        let isDir = false;
        try {
          isDir = statSync(fd.path).isDirectory();
        } catch {
          isDir = ![...vol.keys()].includes(r);
        }
        if (!isDir) return;
        // A directory fsync makes every pending change of its entries durable, in order.
        const next = new Map(dur);
        const keep: NsOp[] = [];
        for (const op of nsPending) (op.dir === r ? op.apply(next) : keep.push(op));
        dur = next;
        nsPending.splice(0, nsPending.length, ...keep);
        for (const rn of renamed) if (rn.dir === r) rn.dir = "";
        return;
      }
      case "rename":
      case "renameat":
      case "renameat2": {
        const [from, to] =
          c.name === "rename"
            ? [strArg(c.args[0]).toString(), strArg(c.args[1]).toString()]
            : [resolveAt(c.args[0], strArg(c.args[1]).toString()), resolveAt(c.args[2], strArg(c.args[3]).toString())];
        if (!inside(to)) return;
        renames++;
        snapshot(i, `rename(${rel(from)} -> ${rel(to)})`);
        const ino = vol.get(rel(from));
        if (!ino) return;
        if (ino.pending.length) violations.push({ kind: "rename-before-fsync", path: rel(to), detail: `${rel(from)} renamed with ${ino.pending.length} write(s) not fsynced` });
        if (opts.stateFiles) {
          for (const [p, other] of vol) {
            if (opts.stateFiles.test(p) && other.pending.length) violations.push({ kind: "state-not-synced", path: p, detail: `${other.pending.length} write(s) not fsynced when ${rel(to)} was renamed into place` });
          }
        }
        vol.delete(rel(from));
        vol.set(rel(to), ino);
        const [rf, rt] = [rel(from), rel(to)];
        nsOp(dirname(rt), `rename ${rf} -> ${rt}`, (ns) => {
          ns.delete(rf);
          ns.set(rt, ino);
        });
        renamed.push({ path: rt, dir: dirname(rt), at: i });
        return;
      }
      case "link":
      case "linkat": {
        const [from, to] =
          c.name === "link"
            ? [strArg(c.args[0]).toString(), strArg(c.args[1]).toString()]
            : [resolveAt(c.args[0], strArg(c.args[1]).toString()), resolveAt(c.args[2], strArg(c.args[3]).toString())];
        const ino = inside(from) ? vol.get(rel(from)) : undefined;
        if (!inside(to) || !ino) return;
        if (ino.pending.length) violations.push({ kind: "rename-before-fsync", path: rel(to), detail: `${rel(from)} linked with ${ino.pending.length} write(s) not fsynced` });
        vol.set(rel(to), ino);
        const rt = rel(to);
        nsOp(dirname(rt), `link ${rt}`, (ns) => ns.set(rt, ino));
        renamed.push({ path: rt, dir: dirname(rt), at: i });
        return;
      }
      case "unlink":
      case "unlinkat": {
        const p = c.name === "unlink" ? strArg(c.args[0]).toString() : resolveAt(c.args[0], strArg(c.args[1]).toString());
        if (!inside(p) || (c.args[2] ?? "").includes("AT_REMOVEDIR")) return;
        const r = rel(p);
        if (!vol.has(r)) return;
        vol.delete(r);
        nsOp(dirname(r), `unlink ${r}`, (ns) => ns.delete(r));
        return;
      }
    }
  });
  snapshot(calls.length, "exit");
  for (const rn of renamed) if (rn.dir) violations.push({ kind: "rename-not-durable", path: rn.path, detail: `no fsync of ${rn.dir}/ after the rename` });
  return { calls: calls.length, renames, fsyncs, violations, states, points };
}

/** The durable bytes plus the pending writes, the last one cut in half. */
function torn(ino: Inode): Buffer {
  if (!ino.pending.length) return ino.data;
  let data = Buffer.from(ino.durable);
  ino.pending.forEach((w, k) => {
    if (w.truncate !== undefined) {
      data = w.truncate <= data.length ? data.subarray(0, w.truncate) : Buffer.concat([data, Buffer.alloc(w.truncate - data.length)]);
      return;
    }
    const bytes = k === ino.pending.length - 1 ? w.bytes.subarray(0, Math.floor(w.bytes.length / 2)) : w.bytes;
    const end = w.off + bytes.length;
    if (end > data.length) data = Buffer.concat([data, Buffer.alloc(end - data.length)]);
    bytes.copy(data, w.off);
  });
  return data;
}

/** Every file under `root`: relative path → content. */
export function readTree(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(relative(root, p), readFileSync(p));
    }
  };
  walk(root);
  return out;
}

/** Replaces the tree under `root` with a crash state (directories in `dirs` are recreated empty first). */
export function materialize(root: string, state: CrashState, dirs: string[]): void {
  rmSync(root, { recursive: true, force: true });
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  for (const [p, b] of state.files) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), b);
  }
}

/** Every directory under `root`, relative (to recreate the skeleton of a crash state). */
export function readDirs(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      out.push(relative(root, join(d, e.name)));
      walk(join(d, e.name));
    }
  };
  walk(root);
  return out;
}
