/**
 * The app's own cost per check-in, without TLS, transport or disk: `app.fetch` called in-process
 * (the test fixture's gateway, SQLite in memory) with the verified peer the transport would pass;
 * then the same requests as bytes through the transport's request loop (gateway/transport/
 * requests.ts, with the gateway's admission hook and head handler) on a socket that takes every
 * write, so the transport's JavaScript is counted too, without the TLS socket's.
 * Shows what the routes, device auth, cache, sightings, metrics and validators cost, which the
 * network benchmark (run.ts) cannot separate from the handshake, the socket writes and the fsync
 * of POST /events on a shared machine. Each checkout given runs in its own process, alternating,
 * best of --rounds.
 *
 * Usage: bun bench/gateway-checkin/app-cost.ts [--requests 20000] [--rounds 3] [--devices 200] [DIR...]
 * (DIR: checkouts to compare, e.g. a `git archive` of an older commit; default this one)
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";

const { values, positionals } = benchArgs({
  allowPositionals: true,
  options: {
    requests: { type: "string", default: "20000" },
    rounds: { type: "string", default: "3" },
    devices: { type: "string", default: "200" },
    child: { type: "string" },
  },
});

interface Costs {
  /** CPU microseconds (user + system, all threads) per request, averaged over the run. */
  pollHit: number;
  pollMiss: number;
  eventHit: number;
  /** The same through the transport's request loop (kept-alive connection, device cached). */
  wirePoll: number;
  wireEvent: number;
  /** The main thread's share of the figures above (the rest is the SQLite writer thread's). */
  main: { pollHit: number; eventHit: number; wirePoll: number; wireEvent: number };
  /** The server's heap growth per request before a collection, in bytes (allocation pressure). */
  pollBytes: number;
  eventBytes: number;
}

if (values.child) {
  const { heapStats } = await import("bun:jsc");
  const { testGateway, anEvent } = (await import(join(values.child, "test/gateway/_fixture.ts"))) as typeof import("../../test/gateway/_fixture.ts");
  const t = await testGateway();
  // As `gateway serve` has it: TUF metadata read through the 1 s cache (the fixture reads the store directly).
  const { TufRepo } = (await import(join(values.child, "gateway/ota/repo.ts"))) as typeof import("../../gateway/ota/repo.ts");
  const { MemoryTufStorage } = (await import(join(values.child, "gateway/ota/memory-storage.ts"))) as typeof import("../../gateway/ota/memory-storage.ts");
  const { CachedTufStorage } = (await import(join(values.child, "gateway/store/tuf-cache.ts"))) as typeof import("../../gateway/store/tuf-cache.ts");
  const keysDir = await mkdtemp(join(tmpdir(), "app-cost-"));
  t.gw.tuf = await TufRepo.open({ storage: new CachedTufStorage(new MemoryTufStorage()), keysDir });
  const devices = await Promise.all(Array.from({ length: Number(values.devices) }, () => t.register()));
  const n = Number(values.requests);
  const url = "https://gw.test:8443";
  const headers = { "x-ats-tags": "main", "x-ats-target": "amd64-linux-1" };
  const poll = (i: number) => t.app.fetch(new Request(`${url}/repo/timestamp.json`, { headers }), { peer: devices[i % devices.length]!.peer });
  let seq = 0;
  const post = (i: number) =>
    t.app.fetch(
      new Request(`${url}/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify([anEvent(`e-${seq++}`)]) }),
      { peer: devices[i % devices.length]!.peer },
    );
  // The transport's request loop, one connection per device, on a socket that takes every write.
  const { RequestLoop } = (await import(join(values.child, "gateway/transport/requests.ts"))) as typeof import("../../gateway/transport/requests.ts");
  const { Connection } = (await import(join(values.child, "gateway/transport/connection.ts"))) as typeof import("../../gateway/transport/connection.ts");
  const { DEFAULT_LIMITS } = (await import(join(values.child, "gateway/transport/options.ts"))) as typeof import("../../gateway/transport/options.ts");
  const { createAdmission } = (await import(join(values.child, "gateway/admission.ts"))) as typeof import("../../gateway/admission.ts");
  const app = t.app as typeof t.app & { fetchHead?: import("../../gateway/transport/options.ts").TransportOptions["fetchHead"] };
  const loop = new RequestLoop(
    {
      host: "gw.test",
      port: 8443,
      cert: "",
      key: "",
      clientCa: "",
      fetch: (req, env) => app.fetch(req, env),
      ...(app.fetchHead ? { fetchHead: app.fetchHead } : {}), // not in checkouts older than the head handler
      admit: createAdmission({ devices: t.gw.devices, tokenValid: () => false }),
    },
    DEFAULT_LIMITS,
    { stopping: () => false, authenticated: () => {} },
  );
  let answered: ((status: number) => void) | undefined;
  const sink = {
    write(data: Uint8Array) {
      answered?.(Number(Buffer.from(data.subarray(9, 12)).toString("latin1"))); // "HTTP/1.1 200"
      return data.byteLength;
    },
    end() {},
    terminate() {},
    pause() {},
    resume() {},
  };
  const conns = devices.map((d) => Object.assign(new Connection(sink, "127.0.0.1"), { peer: d.peer, authenticated: true }));
  const wire = (i: number, bytes: Buffer) =>
    new Promise<{ status: number }>((resolve) => {
      answered = (status) => resolve({ status });
      loop.onData(conns[i % conns.length]!, bytes);
    });
  const getHead = Buffer.from(`GET /repo/timestamp.json HTTP/1.1\r\nhost: gw.test:8443\r\nx-ats-tags: main\r\nx-ats-target: amd64-linux-1\r\n\r\n`);
  const wirePoll = (i: number) => wire(i, getHead);
  const wirePost = (i: number) => {
    const body = JSON.stringify([anEvent(`w-${seq++}`)]);
    return wire(i, Buffer.from(`POST /events HTTP/1.1\r\nhost: gw.test:8443\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
  };

  async function measure(one: (i: number) => Promise<{ status: number; arrayBuffer?(): Promise<ArrayBuffer> }> | Response, before?: (i: number) => void): Promise<{ us: number; mainUs: number; bytes: number }> {
    const run = async (count: number, each?: (i: number) => void) => {
      for (let i = 0; i < count; i++) {
        before?.(i);
        const res = await one(i);
        if (res.status >= 300) throw new Error(`status ${res.status}`);
        await res.arrayBuffer?.();
        each?.(i);
      }
    };
    await run(2000); // warm-up (JIT)
    Bun.gc(true);
    const cpu0 = process.cpuUsage();
    const main0 = process.threadCpuUsage();
    await run(n);
    const main = process.threadCpuUsage(main0);
    const cpu = process.cpuUsage(cpu0);
    const us = (cpu.user + cpu.system) / n; // CPU time, not wall time: the machine is shared
    const mainUs = (main.user + main.system) / n;
    // Allocation: heap growth over a short untimed pass, sampled (a collection in between only lowers it).
    Bun.gc(true);
    const heap0 = heapStats().heapSize;
    let heapMax = heap0;
    await run(2000, (i) => void ((i & 63) === 0 && (heapMax = Math.max(heapMax, heapStats().heapSize))));
    return { us, mainUs, bytes: (heapMax - heap0) / 2000 };
  }
  const hit = await measure(poll);
  const miss = await measure(poll, (i) => t.gw.devices.invalidate(devices[i % devices.length]!.uuid));
  const events = await measure(post);
  const wired = { poll: await measure(wirePoll), event: await measure(wirePost) };
  await t.close();
  await rm(keysDir, { recursive: true, force: true });
  const out: Costs = { pollHit: hit.us, pollMiss: miss.us, eventHit: events.us, wirePoll: wired.poll.us, wireEvent: wired.event.us, main: { pollHit: hit.mainUs, eventHit: events.mainUs, wirePoll: wired.poll.mainUs, wireEvent: wired.event.mainUs }, pollBytes: hit.bytes, eventBytes: events.bytes };
  console.log(JSON.stringify(out));
  process.exit(0);
}

const roots = positionals.length ? positionals : [join(import.meta.dir, "../..")];
const best = new Map<string, Costs>();
for (let round = 0; round < Number(values.rounds); round++) {
  for (const root of roots) {
    Bun.spawnSync(["sync"]);
    const p = Bun.spawn([process.execPath, import.meta.path, "--child", root, "--requests", values.requests!, "--devices", values.devices!], { stdout: "pipe", stderr: "inherit", cwd: root }); // its bunfig.toml (JSX) applies
    const r = JSON.parse((await new Response(p.stdout).text()).trim().split("\n").at(-1)!) as Costs;
    await p.exited;
    const load = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
    process.stderr.write(`${root}: ${JSON.stringify(r)} (load ${load})\n`);
    const b = best.get(root);
    const sum = (c: Costs) => c.main.pollHit + c.main.eventHit + c.main.wirePoll + c.main.wireEvent;
    if (!b || sum(r) < sum(b)) best.set(root, r);
  }
}
const f = (x: number) => x.toFixed(1).padStart(6);
console.log(`CPU µs per request, all threads (main thread), best of ${values.rounds}, in-process, ${values.devices} devices; heap growth per request in bytes`);
for (const [root, c] of best)
  console.log(
    `${root}: app.fetch GET timestamp.json ${f(c.pollHit)} (${f(c.main.pollHit)}) (cache miss ${f(c.pollMiss)}), POST /events ${f(c.eventHit)} (${f(c.main.eventHit)}); ` +
      `through the transport GET ${f(c.wirePoll)} (${f(c.main.wirePoll)}), POST ${f(c.wireEvent)} (${f(c.main.wireEvent)}); bytes/request GET ${c.pollBytes.toFixed(0)}, POST ${c.eventBytes.toFixed(0)}`,
  );
