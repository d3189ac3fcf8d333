import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDataDir } from "../../gateway/data-dir.ts";
import { signDeviceCsr } from "../../gateway/pki/ca.ts";
import { SqliteStore } from "../../gateway/store/sqlite.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
const dir = await mkdtemp(join(tmpdir(), "exp-"));
const data = await openDataDir(dir, { hosts: ["127.0.0.1"] });
const store = SqliteStore.open(data.dbPath);
const devs: { cert: string; key: string }[] = [];
for (let i = 0; i < 32; i++) {
  const k = await makeDeviceCsr();
  const issued = await signDeviceCsr(data.ca, k.csrPem, { uuid: k.uuid, factory: "main" });
  await store.putDevice({ uuid: k.uuid, name: "x", hardwareId: "h", factory: "main", tags: [], certSerial: issued.serial });
  devs.push({ cert: issued.certPem, key: k.keyPem });
}
await store.close();
const p = Bun.spawn([process.execPath, "gateway/main.ts", "serve", "--data", dir, "--listen", "127.0.0.1:0"], { stderr: "pipe" });
const r = p.stderr.getReader(); let t = "";
while (!/listening on (\S+)/.test(t)) t += new TextDecoder().decode((await r.read()).value);
const url = /listening on (\S+)/.exec(t)![1]!;
async function run(name: string, path: string, init: RequestInit, perDevice: boolean) {
  let n = 0; const end = performance.now() + 3000;
  await Promise.all(Array.from({ length: 32 }, async (_, w) => {
    const d = devs[perDevice ? w : 0]!;
    const tls = { ca: data.ca.certPem, cert: d.cert, key: d.key };
    while (performance.now() < end) { const res = await fetch(url + path, { ...init, tls } as RequestInit); await res.arrayBuffer(); if (res.status >= 300) throw new Error(String(res.status)); n++; }
  }));
  console.log(name, (n / 3).toFixed(0), "req/s");
}
await run("healthz same-cert", "/healthz", {}, false);
await run("healthz per-device-cert", "/healthz", {}, true);
await run("timestamp per-device", "/repo/timestamp.json", {}, true);
let i = 0;
await run("events per-device", "/events", { method: "POST", headers: { "content-type": "application/json" }, get body() { return JSON.stringify([{ id: `e${i++}`, deviceTime: "t", eventType: { id: "X", version: 2 }, event: { correlationId: "c" } }]); } } as RequestInit, true);
p.kill(); await p.exited;
