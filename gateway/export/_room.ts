/**
 * Room for an export's two kinds of writes: the bundle into --out (often a USB stick smaller
 * than a whole bundle) and the scratch in the system's temp folder (a delta's base layer and the
 * tar it rebuilds, neither of which goes into the bundle). Each is checked before it is written,
 * so a full medium is said with the sizes at stake and the folder; a write the disk refuses
 * anyway (the room was taken meanwhile) is said with the folder too, never as a bare ENOSPC.
 *
 * @module
 */
import { sizeText } from "../../lib/cli/bytes.ts";
import { freeBytes } from "../../lib/fs/free.ts";
import { fsWhy, isLocalWriteRefused } from "../../lib/fs/why.ts";

/** A folder the export writes to has no room (or refused the write): which folder, and what to do. */
export class ExportWriteError extends Error {
  override name = "ExportWriteError";
}

/** Where the export writes, named for messages, with what to do when it is full. */
export interface WritePlace {
  dir: string;
  /** "the bundle", "the delta check of layer sha256:…" */
  what: string;
  /** "use a larger medium, ...": said after the sizes. */
  remedy: string;
}

/**
 * Refuses before writing `bytes` (a lower bound) when the file system holding `at.dir` has less
 * free; says nothing when the room cannot be told (the write then says what is wrong).
 *
 * @throws {ExportWriteError}
 */
export async function checkRoom(at: WritePlace, bytes: number): Promise<void> {
  const free = await freeBytes(at.dir);
  if (free !== undefined && free < bytes) throw new ExportWriteError(`Cannot write ${at.what}: need ${sizeText(bytes)}, ${sizeText(free)} free on ${at.dir}; ${at.remedy}`);
}

/** The write this machine refused (no space, read-only, no permission) behind `err`: itself or its cause (a delta's rebuild wraps it); undefined for any other error, or one already said with its folder. */
export function refusedWrite(err: unknown): unknown {
  if (err instanceof ExportWriteError) return undefined;
  return [err, (err as Error)?.cause].find(isLocalWriteRefused);
}

/** `err`, or when it is a write this machine refused ({@link refusedWrite}), an {@link ExportWriteError} naming the folder. */
export function sayWhere(err: unknown, at: WritePlace): unknown {
  const local = refusedWrite(err);
  return local ? new ExportWriteError(`Cannot write ${at.what} in ${at.dir}: ${fsWhy(local)}; ${at.remedy}`, { cause: err }) : err;
}
