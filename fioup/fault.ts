/**
 * Named kill points for power-cut testing: one-line `faultPoint(name)` calls at the moments a
 * crash matters (mid-blob, after a blob commit, right after each saved update state). They do
 * nothing unless the environment asks:
 *
 * - `FIOUP_FAULT=<name>`: the point to kill at, e.g. `state:fetched`, `blob-committed`,
 *   `mid-blob`.
 * - `FIOUP_FAULT_NTH=<n>`: fire on the n-th time this process reaches the point (default 1),
 *   e.g. after the second blob commit.
 * - `FIOUP_FAULT_OFFSET=<bytes>`: for `mid-blob`, fire once a blob bigger than this has at
 *   least this many of its bytes written to its partial file (each blob counts as one hit); a layer's delta
 *   downloading, and the layer being rebuilt from it (its uncompressed tar), count as blobs too.
 * - `FIOUP_FAULT_REPORT=<file>`: where to append one JSON line before dying
 *   (`{"point", "nth", "detail", "pid"}`), so a test knows the kill landed where it meant it to.
 * - `FIOUP_FAULT_SIGNAL=SIGINT|SIGTERM`: send that signal instead, and go on (an operator's
 *   Ctrl-C, or `systemctl stop`, at that very moment).
 *
 * When the point fires, the process writes the marker (synchronously) and sends itself SIGKILL:
 * no `finally`, no exit handler, no buffered write runs, as in a power cut seen by the process.
 * Points: `mid-blob`, `blob-committed`, `register:answered` (the gateway answered a registration, nothing saved yet), `staged` (install: every changed app staged, none stopped yet), `rolling-back` (a failed install or start saved its rollback, nothing restored yet), and `state:<state>` right after each state is saved
 * (initialized, fetching, fetched, installing, installed, starting, started, completing,
 * cancelling, ...): once it is durable. A state saved inside a larger transaction (`started`
 * commits with the new current target) fires once that transaction commits, not before
 * (DeviceDb.transaction defers it), so the rerun always finds the state the point names.
 * `fioup agent` (docs/kanto.md): `agent:received`, `agent:<phase>` once each phase is saved, and
 * `agent:stopped`, `agent:renamed`, `agent:created`, `agent:started`, `agent:removed` after each
 * container call, and `agent:restored` once a rollback has restored an old container.
 *
 * @module
 */
import { appendFileSync } from "node:fs";

const wanted = process.env.FIOUP_FAULT;
const nth = Number(process.env.FIOUP_FAULT_NTH ?? "1");
const offset = Number(process.env.FIOUP_FAULT_OFFSET ?? "0");
const hits = new Map<string, number>();
const crossed = new Set<string>();

/**
 * Kills this process with SIGKILL if `$FIOUP_FAULT` names this point (and this is the n-th hit);
 * otherwise returns at once.
 *
 * @example
 * ```ts
 * await db.setState(id, "fetched");
 * faultPoint("state:fetched");
 * ```
 */
export function faultPoint(name: string, detail: Record<string, unknown> = {}): void {
  if (wanted === undefined || wanted !== name) return;
  const n = (hits.get(name) ?? 0) + 1;
  hits.set(name, n);
  if (n !== nth) return;
  const report = process.env.FIOUP_FAULT_REPORT;
  if (report) appendFileSync(report, JSON.stringify({ point: name, nth: n, detail, pid: process.pid }) + "\n");
  const signal = process.env.FIOUP_FAULT_SIGNAL;
  process.kill(process.pid, signal === "SIGINT" || signal === "SIGTERM" ? signal : "SIGKILL");
}

/**
 * The `mid-blob` point: call it as bytes of a blob reach its partial file. Fires (through
 * {@link faultPoint}) the first time a blob bigger than `$FIOUP_FAULT_OFFSET` has at least that
 * many bytes on disk, so the kill lands inside a blob, never at its end.
 */
export function faultMidBlob(digest: string, onDisk: number, size: number): void {
  if (wanted !== "mid-blob" || !(offset > 0) || size <= offset || onDisk < offset || crossed.has(digest)) return;
  crossed.add(digest); // one hit per blob, so FIOUP_FAULT_NTH=2 means the second blob
  faultPoint("mid-blob", { digest, onDisk, size, offset });
}
