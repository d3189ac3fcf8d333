/**
 * What grew between two V8-format heap snapshots (bench/push/_probe.ts writes them with
 * $PUSH_PROBE_SNAPSHOT set: one with no device held, one with all held): per node type and name
 * (a closure's function name, an object's constructor), the count and bytes added, largest first,
 * divided by --per (the devices held) to read as "per held request".
 *
 * Run: bun bench/push/heap-diff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [--per 3000] [--top 40]
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { benchArgs } from "../_args.ts";

const { values, positionals } = benchArgs({ options: { per: { type: "string", default: "1" }, top: { type: "string", default: "40" } }, allowPositionals: true });
if (positionals.length !== 2) throw new Error("Give two heap snapshots: before and after");
const PER = Number(values.per);

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Count and self size per "type name". */
function tally(file: string): Map<string, { n: number; bytes: number }> {
  const s = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const [ti, ni, si] = [f.indexOf("type"), f.indexOf("name"), f.indexOf("self_size")];
  const out = new Map<string, { n: number; bytes: number }>();
  for (let i = 0; i < s.nodes.length; i += f.length) {
    const type = types[s.nodes[i + ti]!]!;
    const name = type === "string" || type === "concatenated string" || type === "sliced string" ? "" : s.strings[s.nodes[i + ni]!]!.slice(0, 60);
    const key = `${type} ${name}`;
    const e = out.get(key) ?? { n: 0, bytes: 0 };
    e.n++;
    e.bytes += s.nodes[i + si]!;
    out.set(key, e);
  }
  return out;
}

const [a, b] = positionals.map(tally) as [ReturnType<typeof tally>, ReturnType<typeof tally>];
const rows = [...b].map(([k, v]) => ({ k, n: v.n - (a.get(k)?.n ?? 0), bytes: v.bytes - (a.get(k)?.bytes ?? 0) })).filter((r) => r.n > 0 || r.bytes > 0);
rows.sort((x, y) => y.bytes - x.bytes);
const total = rows.reduce((t, r) => t + r.bytes, 0);
console.log(`grown: ${(total / PER).toFixed(0)} bytes per ${PER > 1 ? "held request" : "snapshot"} in all`);
for (const r of rows.slice(0, Number(values.top))) console.log(`${(r.bytes / PER).toFixed(0).padStart(7)} B  ${(r.n / PER).toFixed(2).padStart(6)}x  ${r.k}`);
