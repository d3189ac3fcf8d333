import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDataDir } from "../../gateway/data-dir.ts";
import { signDeviceCsr } from "../../gateway/pki/ca.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
const dir = await mkdtemp(join(tmpdir(), "exp-"));
const data = await openDataDir(dir, { hosts: ["127.0.0.1"] });
const k = await makeDeviceCsr();
const issued = await signDeviceCsr(data.ca, k.csrPem, { uuid: k.uuid, factory: "main" });
const mode = process.argv[2];
if (mode === "server-listen") {
  const { listen } = await import("../../gateway/server.ts");
  const s = await listen({ host: "127.0.0.1", port: 0, cert: data.serverCertPem, key: data.serverKeyPem, clientCa: data.ca.certPem, fetch: () => new Response("hello") });
  console.log(JSON.stringify({ url: s.url, ca: data.ca.certPem, cert: issued.certPem, key: k.keyPem }));
} else if (mode === "server-raw") {
  const http = await import("node:http"); const tls = await import("node:tls");
  const h = http.createServer((req, res) => { res.writeHead(200, { "content-length": "5" }); res.end("hello"); });
  const t = tls.createServer({ requestCert: true, rejectUnauthorized: false, ca: data.ca.certPem, cert: data.serverCertPem, key: data.serverKeyPem }, (s) => { (globalThis as any).c = ((globalThis as any).c ?? 0) + 1; h.emit("connection", s); });
  setInterval(() => console.error("conns", (globalThis as any).c), 1000);
  t.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ url: `https://127.0.0.1:${(t.address() as any).port}`, ca: data.ca.certPem, cert: issued.certPem, key: k.keyPem })));
} else if (mode === "server-bun") {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: data.serverCertPem, key: data.serverKeyPem, ca: data.ca.certPem, requestCert: true }, fetch: () => new Response("hello") });
  console.log(JSON.stringify({ url: `https://127.0.0.1:${s.port}`, ca: data.ca.certPem, cert: issued.certPem, key: k.keyPem }));
}
