/**
 * The gateway's own disk fills up (its data dir on a small tmpfs this file mounts and unmounts;
 * root, as the test harness runs): device writes, registrations and uploads are answered 507 with
 * Retry-After and the reason, not 500 and a stack trace per request; the log says it once when it
 * begins and once when there is room again; /healthz and /metrics show it; the events a device
 * sends again afterwards are stored, and nobody restarts the gateway.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startGatewayServer, type RunningGateway } from "../../gateway/gateway.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { post, tlsFetch } from "./_client.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice } from "./_register.ts";

let mnt = "";
let mounted = false;
let gw: RunningGateway | undefined;
const logs: string[] = [];
const stderr: string[] = [];
const consoleError = console.error;

beforeAll(async () => {
  mnt = join(await tempDir("disk-full-"), "small");
  mkdirSync(mnt);
  expect((await run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt])).code).toBe(0);
  mounted = true;
  // What the gateway prints outside its log (a stack trace per failed request went there).
  console.error = (...args: unknown[]) => void stderr.push(args.map(String).join(" "));
  gw = await startGatewayServer({ dataDir: join(mnt, "data"), listen: "127.0.0.1:0", log: (l) => logs.push(l) });
}, 120_000);

afterAll(async () => {
  console.error = consoleError;
  await gw?.stop().catch(() => {}); // a red run's stop may throw: the file system is unmounted all the same
  if (mounted) await run(["umount", mnt]);
}, 120_000);

test("a full disk is answered 507 with Retry-After, said once, shown on /healthz and /metrics, and over by itself once there is room", async () => {
  const g = gw!;
  const ca = g.data.ca.certPem;
  const anyone = tlsFetch({ ca });
  const d = await registerDevice(g.url, g.data.adminToken, ca);
  const events = (id: string) => d.fetch(`${g.url}/events`, post([anEvent(id)]));
  expect((await events("before")).status).toBe(200);

  // Fill the file system: the write fails part way, as a real disk filling up does.
  const ballast = join(mnt, "ballast");
  await run(["sh", "-c", `dd if=/dev/zero of=${ballast} bs=1M count=64 2>/dev/null; true`]);
  for (const id of ["full-1", "full-2", "full-3"]) {
    const res = await events(id);
    expect(res.status).toBe(507);
    expect(res.headers.get("retry-after")).toBe("60");
    expect(((await res.json()) as { error: string }).error).toBe("The gateway's disk is full: the operator must free space on it; send this again later");
  }
  await expect(registerDevice(g.url, g.data.adminToken, ca)).rejects.toThrow("507");
  // What gateway publish's registry client says of a refused upload.
  const registry = new RegistryClient({ registry: new URL(g.url).host, auth: { token: g.data.adminToken }, tls: { ca } });
  await expect(registry.pushBlob("main/app", new Blob([new Uint8Array(1 << 20).fill(1)]))).rejects.toThrow(
    "returned 507 The gateway's disk is full: the operator must free space on it; send this again later",
  );
  const health = await anyone(`${g.url}/healthz`);
  expect(health.status).toBe(503);
  expect(await health.text()).toContain("Writes fail for want of disk space since ");
  expect(await (await anyone(`${g.url}/metrics`)).text()).toContain('gateway_disk_free_bytes{dir="data"} 0\n');
  // A poll still reads.
  expect((await d.fetch(`${g.url}/repo/timestamp.json`)).status).toBe(200);
  await Bun.sleep(2500); // sightings flushes and lease renewals fail meanwhile, without a line each

  const spells = logs.filter((l) => l.startsWith("gateway: a write failed for want of disk space"));
  expect(spells).toHaveLength(1);
  expect(spells[0]).toContain(`data ${join(mnt, "data")}: 0 B free`);
  expect(spells[0]).toContain("answered 507 with Retry-After until there is room again");
  expect(stderr.join("\n")).not.toContain("disk is full");
  expect(stderr.join("\n")).not.toContain("Internal error");

  rmSync(ballast);
  const t0 = Date.now();
  while (!logs.some((l) => l.startsWith("gateway: there is disk space again")) && Date.now() - t0 < 15_000) await Bun.sleep(200);
  expect(logs.find((l) => l.startsWith("gateway: there is disk space again"))).toMatch(/^gateway: there is disk space again \(data .*: [\d.]+ MiB free, registry .*\), after \d+ s; \d+ writes were refused meanwhile$/);
  expect((await anyone(`${g.url}/healthz`)).status).toBe(200);
  // The device sends what was refused again, and it is stored.
  for (const id of ["full-1", "full-2", "full-3"]) expect((await events(id)).status).toBe(200);
  expect((await g.gw.store.listEvents(d.uuid)).map((e) => e.id).sort()).toEqual(["before", "full-1", "full-2", "full-3"]);
  writeFileSync(join(mnt, "after"), "room"); // and the disk takes writes
}, 120_000);

test("a gateway stopped while its disk is full stops whole: the last check-ins' write fails, the rest of the stop runs", async () => {
  const g = gw!;
  const d = await registerDevice(g.url, g.data.adminToken, g.data.ca.certPem);
  expect((await d.fetch(`${g.url}/repo/timestamp.json`)).status).toBe(200); // a sighting to write at stop
  await run(["sh", "-c", `dd if=/dev/zero of=${join(mnt, "ballast")} bs=1M count=64 2>/dev/null; true`]);
  await g.stop();
  expect(logs.some((l) => l.startsWith("gateway: the last second's check-ins (last seen) were not written: "))).toBe(true);
  expect(existsSync(join(mnt, "data", "serve.json"))).toBe(false);
}, 60_000);

test("a start on the full disk is refused saying so and what to do, leaving no folder it made; once there is room it starts on the same data", async () => {
  // Full to the last block (the stop above removed its files after the ballast was written): even
  // the data dir's lock cannot be written.
  await run(["sh", "-c", `dd if=/dev/zero of=${join(mnt, "ballast-2")} bs=4k 2>/dev/null; true`]);
  const dataDir = join(mnt, "data");
  const refused = await startGatewayServer({ dataDir, listen: "127.0.0.1:0", log: (l) => logs.push(l) }).then(
    (g) => g.stop().then(() => undefined),
    (e: Error) => e.message,
  );
  expect(refused).toBe(`Cannot take the lock ${join(dataDir, "serve.lock")}: no space left on the device; free space on its file system (df ${dataDir}), then run the command again`);
  // A first start in a new folder there: refused the same way, and the folders it made are gone again.
  const fresh = join(mnt, "new", "data");
  await expect(startGatewayServer({ dataDir: fresh, listen: "127.0.0.1:0", log: () => {} })).rejects.toThrow(`Cannot take the lock ${join(fresh, "serve.lock")}: no space left on the device`);
  expect(existsSync(join(mnt, "new"))).toBe(false);
  for (const f of ["ballast", "ballast-2"]) rmSync(join(mnt, f), { force: true });
  gw = await startGatewayServer({ dataDir, listen: "127.0.0.1:0", log: (l) => logs.push(l) });
  expect((await gw.gw.store.countDevices())).toBe(2); // the devices both tests registered
}, 60_000);
