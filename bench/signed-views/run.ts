/**
 * Signed views: the CPU a device's `GET /repo/timestamp.json` costs on the device fast path
 * (gateway/routes/checkin.ts) with an active rollout (each device served its signed view, from
 * the cache) against the path without views, in one process: the real app, store (SQLite in
 * memory), TUF repository (over the read cache, as gateway.ts opens it) and rollout service, requests handed to the fast path as the transport
 * would, TLS left out (it costs the same either way). The two modes alternate in short chunks, many
 * times, and the process's CPU time (not wall time: the machine is shared) is divided by the
 * check-ins made. The end-to-end figure over TLS is bench/rollout's.
 *
 * Usage: bun bench/signed-views/run.ts [--devices 1000] [--targets 50] [--chunks 40] [--chunk 2000]
 *
 * @module
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { MemoryTufStorage } from "../../gateway/ota/memory-storage.ts";
import { TufRepo } from "../../gateway/ota/repo.ts";
import { Rollouts } from "../../gateway/rollouts/service.ts";
import { CachedTufStorage } from "../../gateway/store/tuf-cache.ts";
import { withDeviceFastPath } from "../../gateway/routes/checkin.ts";
import { testGateway } from "../../test/gateway/_fixture.ts";

const { values } = benchArgs({
  options: {
    devices: { type: "string", default: "1000" },
    targets: { type: "string", default: "50" },
    chunks: { type: "string", default: "40" },
    chunk: { type: "string", default: "2000" },
  },
});
const DEVICES = Number(values.devices);
const TARGETS = Number(values.targets);
const log = (s: string) => process.stderr.write(s + "\n");
const entry = (v: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(v), hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: {} },
});

const t = await testGateway();
// As gateway.ts opens it: the repository over the read cache (the latest records kept for a second); the
// metadata in memory rather than in the store, whose TUF tables the fixture's repository already holds.
const keysDir = await mkdtemp(join(tmpdir(), "bench-views-keys-"));
t.gw.tuf = await TufRepo.open({ storage: new CachedTufStorage(new MemoryTufStorage()), keysDir: join(keysDir, "keys") });
const rollouts = await new Rollouts({ store: t.gw.store, tuf: t.gw.tuf, tickMs: 0, viewPollMs: 0 }).start();
try {
  const devices: Awaited<ReturnType<typeof t.register>>[] = [];
  for (let i = 0; i < DEVICES; i++) {
    devices.push(await t.register({ tags: ["main"] }));
    if ((i + 1) % 200 === 0) log(`registered ${i + 1} of ${DEVICES} devices`);
  }
  const published: Record<string, TargetEntry> = {};
  for (let v = 1; v <= TARGETS; v++) published[`amd64-linux-${v}`] = entry(v);
  await t.gw.tuf.addTargets(published);
  // The rollout of the next version: its first wave (10%) sees it annotated, the others have it hidden.
  const next = TARGETS + 1;
  const rollout = await rollouts.create({ target: String(next), tag: "main", waves: [10, 100], soak: "1h" });
  await t.gw.tuf.addTargets({ [`amd64-linux-${next}`]: entry(next) });
  const fetch = withDeviceFastPath(t.gw, (req, env) => t.app.fetch(req, env), (err) => {
    throw err;
  });

  const cpu = { without: 0, with: 0 };
  const count = { without: 0, with: 0 };
  async function chunk(mode: "with" | "without") {
    t.gw.rollouts = mode === "with" ? rollouts : undefined; // without: the path as it was before views
    const c0 = process.cpuUsage();
    for (let i = 0; i < Number(values.chunk); i++) {
      const res = await fetch(new Request("https://gw.test:8443/repo/timestamp.json"), { peer: devices[i % devices.length]!.peer });
      if (res.status !== 200) throw new Error(`GET /repo/timestamp.json answered ${res.status}`);
      await res.arrayBuffer();
    }
    const c = process.cpuUsage(c0);
    cpu[mode] += c.user + c.system;
    count[mode] += Number(values.chunk);
  }
  // Make sure "with" measures views: most devices are served a timestamp that differs from the main one.
  t.gw.rollouts = rollouts;
  const main = (await t.gw.tuf.metadata("timestamp.json"))!;
  let differ = 0;
  for (const d of devices) {
    const res = await fetch(new Request("https://gw.test:8443/repo/timestamp.json"), { peer: d.peer });
    if (Buffer.compare(Buffer.from(await res.arrayBuffer()), Buffer.from(main)) !== 0) differ++;
  }
  if (differ < devices.length / 2) throw new Error(`Only ${differ} of ${devices.length} devices got a view: the benchmark would not measure views`);
  log(`${differ} of ${devices.length} devices are served a view`);
  await chunk("with"); // warm: views signed and cached, code compiled
  await chunk("without");
  for (const m of ["without", "with"] as const) (cpu[m] = 0), (count[m] = 0);
  for (let k = 0; k < Number(values.chunks); k++) for (const m of k % 2 ? (["with", "without"] as const) : (["without", "with"] as const)) await chunk(m);
  const per = (m: "with" | "without") => cpu[m] / count[m];
  console.log(`signed views: ${DEVICES} devices, ${TARGETS + 1} targets, one active rollout (10% annotated, 90% hidden)`);
  console.log(`without views: ${per("without").toFixed(1)} us CPU per timestamp GET`);
  console.log(`with views:    ${per("with").toFixed(1)} us CPU per timestamp GET (+${(per("with") - per("without")).toFixed(1)} us, ${((per("with") / per("without") - 1) * 100).toFixed(1)}%)`);
  await rollouts.cancel(rollout.id);
} finally {
  await rollouts.stop();
  await t.close();
  await rm(keysDir, { recursive: true, force: true });
}
