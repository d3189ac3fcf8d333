/**
 * `gateway proxy-cert`: what an operator gets (the certificate, its key and the two together for
 * HAProxy, the key files private, nothing overwritten) and what bad input gets (bad usage, exit
 * 2, nothing written). Whether the replicas believe a proxy with it: proxies.test.ts, through real
 * HAProxy and nginx, whose harness issues it with this command.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commands } from "../../gateway/commands/index.ts";
import { openDataDir } from "../../gateway/data-dir.ts";
import { exitCodeFor } from "../../gateway/exit-codes.ts";
import { deviceIdentity, proxyName } from "../../gateway/pki/keys.ts";
import { runCliCaptured } from "../harness/cli.ts";

let dir: string;
let data: string;
let out: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "proxy-cert-"));
  data = join(dir, "data");
  out = join(dir, "out");
  await openDataDir(data, { hosts: ["127.0.0.1"] });
  await Bun.write(join(out, ".keep"), "");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const gateway = (...argv: string[]) => runCliCaptured({ name: "gateway", version: "0", summary: "", commands, exitCodeFor }, argv);

test("proxy-cert writes NAME.crt, NAME.key (0600) and NAME.pem (both, 0600), a proxy certificate of the data dir's CA", async () => {
  const r = await gateway("proxy-cert", "--data", data, "--name", "haproxy1", "--out", out, "--days", "30", "--format", "json");
  expect(r.code).toBe(0);
  const res = JSON.parse(r.out) as { name: string; serial: string; notAfter: string; cert: string; key: string; pem: string };
  expect(res).toMatchObject({ name: "haproxy1", cert: join(out, "haproxy1.crt"), key: join(out, "haproxy1.key"), pem: join(out, "haproxy1.pem") });
  const certPem = readFileSync(res.cert, "utf8");
  const keyPem = readFileSync(res.key, "utf8");
  expect(readFileSync(res.pem, "utf8")).toBe(certPem + keyPem);
  expect(statSync(res.key).mode & 0o777).toBe(0o600);
  expect(statSync(res.pem).mode & 0o777).toBe(0o600);
  const cert = new X509Certificate(certPem);
  expect(cert.checkIssued(new X509Certificate(readFileSync(join(data, "pki", "ca.pem"))))).toBe(true);
  expect(proxyName(cert)).toBe("haproxy1");
  expect(deviceIdentity(cert)).toBeNull();
  expect(cert.publicKey.export({ format: "pem", type: "spki" })).toBe(createPublicKey(createPrivateKey(keyPem)).export({ format: "pem", type: "spki" }));
  const days = (cert.validToDate.getTime() - Date.now()) / 86_400_000;
  expect(days).toBeGreaterThan(29);
  expect(days).toBeLessThanOrEqual(30);
  expect(new Date(res.notAfter).getTime()).toBe(cert.validToDate.getTime());
});

test("proxy-cert never overwrites a proxy's files, and refuses bad input as bad usage, writing nothing", async () => {
  await gateway("proxy-cert", "--data", data, "--name", "nginx1", "--out", out);
  const before = readFileSync(join(out, "nginx1.key"), "utf8");
  const again = await gateway("proxy-cert", "--data", data, "--name", "nginx1", "--out", out);
  expect(again.code).toBe(1);
  expect(again.err).toContain(`Cannot write ${join(out, "nginx1.crt")}: it exists (a proxy's certificate and key are never overwritten: remove them first, or give another --name)`);
  expect(readFileSync(join(out, "nginx1.key"), "utf8")).toBe(before);
  const files = readdirSync(out).sort();
  const bad: [string[], string][] = [
    [["--data", data, "--out", out], "--name NAME is required"],
    [["--data", data, "--name", "../x", "--out", out], '--name ../x: letters, digits, ".", "_" and "-" only'],
    [["--data", data, "--name", "p", "--out", join(dir, "nowhere")], `--out ${join(dir, "nowhere")}: `],
    [["--data", join(dir, "nodata"), "--name", "p", "--out", out], `--data ${join(dir, "nodata")}: no such folder`],
    [["--data", data, "--name", "p", "--out", out, "--days", "0"], "--days"],
  ];
  for (const [argv, said] of bad) {
    const r = await gateway("proxy-cert", ...argv);
    expect(`${r.code} ${r.err}`).toContain(`2 gateway proxy-cert: ${said}`);
  }
  expect(readdirSync(out).sort()).toEqual(files);
});
