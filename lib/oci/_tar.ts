/**
 * Just enough tar for image archives: an index of a tar file's entries (so layers can be
 * streamed straight out of a `docker save` tar by offset, never copied or held in memory)
 * and a ustar writer that streams entries with backpressure.
 *
 * @module
 */
import { open } from "node:fs/promises";

/** One regular file inside a tar: where its bytes start and how many there are. */
export interface TarEntry {
  name: string;
  offset: number;
  size: number;
}

/** Thrown when a file is not a readable tar archive. */
export class InvalidTarError extends Error {
  override name = "InvalidTarError";
}

const dec = new TextDecoder();

function cString(buf: Uint8Array, start: number, len: number): string {
  const slice = buf.subarray(start, start + len);
  const nul = slice.indexOf(0);
  return dec.decode(nul >= 0 ? slice.subarray(0, nul) : slice);
}

function parseNumber(buf: Uint8Array, start: number, len: number): number {
  if (buf[start]! & 0x80) {
    // GNU base-256 for sizes of 8 GiB and up
    let n = 0;
    for (let i = start + 1; i < start + len; i++) n = n * 256 + buf[i]!;
    return n;
  }
  const s = cString(buf, start, len).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new InvalidTarError(`Invalid tar header: bad number "${s}"`);
  return parseInt(s, 8);
}

function parsePax(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(" ", i);
    if (sp < 0) break;
    const len = Number(text.slice(i, sp));
    if (!Number.isFinite(len) || len <= 0) break;
    const rec = text.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf("=");
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

const normalizeName = (n: string) => n.replace(/^(\.\/)+/, "").replace(/^\/+/, "");

/**
 * Lists the regular files of an uncompressed tar by reading only its headers.
 *
 * @throws {InvalidTarError} If a header checksum is wrong or an entry runs past the end.
 */
export async function indexTar(path: string): Promise<Map<string, TarEntry>> {
  const fh = await open(path, "r");
  try {
    const total = (await fh.stat()).size;
    const entries = new Map<string, TarEntry>();
    const header = new Uint8Array(512);
    let pos = 0;
    let longName: string | undefined;
    let paxPath: string | undefined;
    while (pos + 512 <= total) {
      const { bytesRead } = await fh.read(header, 0, 512, pos);
      if (bytesRead < 512) break;
      if (header.every((b) => b === 0)) break;
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
      if (sum !== parseNumber(header, 148, 8)) throw new InvalidTarError(`Invalid tar archive ${path}: bad header checksum at offset ${pos}`);
      const size = parseNumber(header, 124, 12);
      const type = String.fromCharCode(header[156]! || 48);
      let name = cString(header, 0, 100);
      if (cString(header, 257, 5) === "ustar") {
        const prefix = cString(header, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      const dataStart = pos + 512;
      if (dataStart + size > total) throw new InvalidTarError(`Invalid tar archive ${path}: entry "${name}" runs past the end`);
      const readData = async () => {
        if (size > 1024 * 1024) throw new InvalidTarError(`Invalid tar archive ${path}: metadata entry of ${size} bytes`);
        const b = new Uint8Array(size);
        await fh.read(b, 0, size, dataStart);
        return b;
      };
      if (type === "L") longName = cString(await readData(), 0, size);
      else if (type === "x") paxPath = parsePax(dec.decode(await readData())).path ?? paxPath;
      else if (type !== "g") {
        const full = normalizeName(paxPath ?? longName ?? name);
        longName = paxPath = undefined;
        if (type === "0" || type === "7") entries.set(full, { name: full, offset: dataStart, size });
      }
      pos = dataStart + Math.ceil(size / 512) * 512;
    }
    return entries;
  } finally {
    await fh.close();
  }
}

const enc = new TextEncoder();

function writeString(buf: Uint8Array, s: string, start: number, len: number): void {
  const b = enc.encode(s);
  if (b.length > len) throw new RangeError(`tar field too long: "${s}"`);
  buf.set(b, start);
}

function writeOctal(buf: Uint8Array, n: number, start: number, len: number): void {
  const s = n.toString(8);
  if (s.length <= len - 1) {
    writeString(buf, s.padStart(len - 1, "0"), start, len - 1);
    return;
  }
  // base-256 (GNU) for numbers too large for octal
  buf[start] = 0x80;
  let v = n;
  for (let i = start + len - 1; i > start; i--) {
    buf[i] = v % 256;
    v = Math.floor(v / 256);
  }
}

/** A ustar header for a regular file (mode 0644, owner 0, mtime given, default epoch). */
export function tarHeader(name: string, size: number, mtime = 0): Uint8Array {
  const h = new Uint8Array(512);
  let prefix = "";
  let base = name;
  if (enc.encode(name).length > 100) {
    const cut = name.lastIndexOf("/", 155);
    if (cut <= 0 || enc.encode(name.slice(cut + 1)).length > 100) throw new RangeError(`tar entry name too long: "${name}"`);
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
  }
  writeString(h, base, 0, 100);
  writeOctal(h, 0o644, 100, 8);
  writeOctal(h, 0, 108, 8);
  writeOctal(h, 0, 116, 8);
  writeOctal(h, size, 124, 12);
  writeOctal(h, mtime, 136, 12);
  h[156] = 48; // "0": regular file
  writeString(h, "ustar\u0000", 257, 6);
  writeString(h, "00", 263, 2);
  writeString(h, prefix, 345, 155);
  h.fill(32, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  writeString(h, sum.toString(8).padStart(6, "0") + "\u0000 ", 148, 8);
  return h;
}

/** One file to put in a tar: bytes, or a Blob (e.g. `Bun.file`) streamed from disk. */
export interface TarSource {
  name: string;
  content: Uint8Array | Blob;
}

/** Yields a tar archive's bytes entry by entry; pulls each file only when asked. */
export async function* tarChunks(files: AsyncIterable<TarSource> | Iterable<TarSource>): AsyncGenerator<Uint8Array> {
  for await (const f of files) {
    const size = f.content instanceof Uint8Array ? f.content.byteLength : f.content.size;
    yield tarHeader(f.name, size);
    let written = 0;
    if (f.content instanceof Uint8Array) {
      yield f.content;
      written = size;
    } else {
      for await (const chunk of f.content.stream()) {
        written += chunk.byteLength;
        if (written > size) throw new InvalidTarError(`Cannot write tar entry "${f.name}": file grew while being read`);
        yield chunk;
      }
    }
    if (written !== size) throw new InvalidTarError(`Cannot write tar entry "${f.name}": file has ${written} bytes, expected ${size}`);
    const pad = (512 - (size % 512)) % 512;
    if (pad) yield new Uint8Array(pad);
  }
  yield new Uint8Array(1024);
}

/** Wraps an async generator as a byte stream with backpressure (pulled one chunk at a time). */
export function toReadableStream(gen: AsyncGenerator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await gen.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await gen.return(undefined);
    },
  });
}
