/**
 * The device fetches TUF metadata over mutual TLS with Bun's fetch `tls`
 * option, as it does from the gateway: a real TLS server on 127.0.0.1 that
 * requires a client certificate from the factory CA (certificates made with
 * the openssl CLI).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { MetadataFetchError, verifyAndLoadTargets } from "../../lib/tuf/index.ts";
import { MemoryTufStorage, TufRepo } from "../../gateway/ota/index.ts";

let work: string;
let server: ReturnType<typeof Bun.serve>;
let repo: TufRepo;
const pem: Record<string, string> = {};

function openssl(args: string[]) {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: work, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.toString()}`);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "tuf-mtls-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test factory CA"]);
  await writeFile(join(work, "ext"), "subjectAltName=IP:127.0.0.1\n");
  for (const [name, subj, ext] of [["server", "/CN=127.0.0.1", ["-extfile", "ext"]], ["device", "/CN=device-1/OU=main", []]] as const) {
    openssl(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subj]);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", ...ext]);
  }
  for (const f of ["ca.pem", "server.pem", "server.key", "device.pem", "device.key"]) pem[f] = await Bun.file(join(work, f)).text();
  repo = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir: join(work, "keys") });
  await repo.addTargets({
    "rpi-1": { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "1", hardwareIds: ["rpi"], tags: [], docker_compose_apps: {} } },
  });
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: pem["server.pem"], key: pem["server.key"], ca: pem["ca.pem"], requestCert: true, rejectUnauthorized: true },
    async fetch(req) {
      const bytes = await repo.metadata(new URL(req.url).pathname.replace(/^\/repo\//, ""));
      return bytes ? new Response(bytes) : new Response("not found", { status: 404 });
    },
  });
});

afterAll(async () => {
  await server?.stop(true);
  await rm(work, { recursive: true, force: true });
});

async function device(): Promise<string> {
  const dir = join(work, `device-${Math.random().toString(36).slice(2)}`);
  await mkdir(dir);
  await writeFile(join(dir, "root.json"), await repo.trustedRoot());
  return dir;
}

test("verifies targets over mutual TLS with the device certificate", async () => {
  const got = await verifyAndLoadTargets({
    metadataDir: await device(),
    metadataBaseUrl: `https://127.0.0.1:${server.port}/repo`,
    fetch: { tls: { ca: pem["ca.pem"], cert: pem["device.pem"], key: pem["device.key"] } },
  });
  expect(Object.keys(got.targets)).toEqual(["rpi-1"]);
});

test("without a client certificate the gateway refuses the connection", async () => {
  const err = await verifyAndLoadTargets({
    metadataDir: await device(),
    metadataBaseUrl: `https://127.0.0.1:${server.port}/repo`,
    fetch: { tls: { ca: pem["ca.pem"] } },
  }).catch((e) => e);
  expect(err).toBeInstanceOf(MetadataFetchError);
});
