/**
 * Replicas whose data dirs were copied before `--external-registry-service` was first used each
 * lacked the registry's token-signing key, and each made its own: the registry trusts one
 * certificate, so the tokens of every other replica were refused with a bare 401. The first
 * replica to make the key now claims it in the database they share, and the others take it.
 * Checked as the operator would meet it: a docker-registry trusting one replica's
 * registry-token.pem takes a push whose token another replica signed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { digestBytes } from "../../lib/oci/digest.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import { startTokenRegistry } from "../harness/docker-registry.ts";
import { startGateway, startReplica, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import type { Proc } from "../harness/tmp.ts";

const SERVICE = ["--external-registry-service", "fleet-registry"];
let pg: PostgresHandle;
let db: string;
const gateways: GatewayHandle[] = [];
let registry: Proc | undefined;

beforeAll(async () => {
  pg = await startPostgres();
  db = await pg.createDatabase("token_replicas");
  // The first start without the flag; the operator copies the data dir to the replicas now. Later
  // the fleet moves to the external registry: every replica stopped, one started with the flag and
  // --registry-change (gateway/README.md, Replicas), then the others with the flag.
  const first = await startGateway({ db });
  gateways.push(first);
  await first.stop();
  gateways.push(await startReplica(first, { db, args: [...SERVICE, "--registry-change"] }));
  gateways.push(await startReplica(first, { db, args: SERVICE }));
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  for (const g of gateways) await g.stop();
  await pg?.stop();
}, 60_000);

const tokenCert = (g: GatewayHandle) => join(g.dataDir, "pki", "registry-token.pem");

test("replicas copied before the external registry was set up sign its tokens with one key: a registry trusting one replica's certificate takes another's tokens", async () => {
  const [, b, c] = gateways as [GatewayHandle, GatewayHandle, GatewayHandle];
  expect(readFileSync(tokenCert(c), "utf8")).toBe(readFileSync(tokenCert(b), "utf8"));
  expect(readFileSync(join(c.dataDir, "pki", "registry-token.key"), "utf8")).toBe(readFileSync(join(b.dataDir, "pki", "registry-token.key"), "utf8"));

  // The registry trusts b's certificate; its realm is c, which signs the tokens.
  const reg = await startTokenRegistry({ realmUrl: c.url, tokenCert: tokenCert(b) });
  registry = reg.proc;
  const client = new RegistryClient({ registry: reg.host, scheme: "http", auth: { username: "ci", password: c.adminToken }, tls: { ca: c.caPem } });
  const blob = crypto.getRandomValues(new Uint8Array(1024));
  await client.pushBlob("main/app", blob);
  expect(await client.blobExists("main/app", digestBytes(blob))).toBe(blob.byteLength);
}, 120_000);

test("a replica whose own token key differs from the shared one takes the shared one at start, and says so", async () => {
  const [first, b] = gateways as [GatewayHandle, GatewayHandle];
  // first's dir had no key; give it one of its own (as an older start would have made), then start it with the flag.
  const other = await startGateway({ args: SERVICE });
  gateways.push(other);
  const pki = (g: GatewayHandle, f: string) => join(g.dataDir, "pki", f);
  await Bun.write(pki(first, "registry-token.key"), Bun.file(pki(other, "registry-token.key")));
  await Bun.write(pki(first, "registry-token.pem"), Bun.file(pki(other, "registry-token.pem")));
  const again = await startGateway({ dataDir: first.dataDir, db, args: SERVICE });
  gateways[0] = again;
  expect(readFileSync(tokenCert(again), "utf8")).toBe(readFileSync(tokenCert(b), "utf8"));
  expect(readFileSync(again.logFile, "utf8")).toContain("held a registry-token key other than the one the replicas share");
}, 120_000);
