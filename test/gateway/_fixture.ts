/**
 * An in-process gateway for route tests: sqlite in memory, a real TufRepo,
 * a fresh CA; devices are registered through the real POST /devices and then
 * act through `app.request(path, init, { peer })`, the identity the transport
 * would pass after verifying their certificate.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { ApiTokenCache } from "../../gateway/admin/api-tokens.ts";
import { createApp } from "../../gateway/app.ts";
import { DeviceCache } from "../../gateway/devices/cache.ts";
import { Sightings } from "../../gateway/devices/sightings.ts";
import type { Gateway, PeerIdentity } from "../../gateway/env.ts";
import { Metrics } from "../../gateway/metrics.ts";
import { TufRepo } from "../../gateway/ota/repo.ts";
import { createCa } from "../../gateway/pki/ca.ts";
import { normalizeSerial } from "../../gateway/pki/keys.ts";
import { newToken } from "../../gateway/pki/tokens.ts";
import { x509 } from "../../lib/x509/eager.ts";
import { SqliteStore } from "../../gateway/store/sqlite.ts";
import { DiskFull } from "../../gateway/disk-full.ts";
import { makeDeviceCsr } from "./_device.ts";

/** `dbFile`: SQLite on a file in the temp dir (device writes on the writer thread) instead of in memory. */
export async function testGateway(opts: { dbFile?: boolean } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "gw-app-"));
  const store = SqliteStore.open(opts.dbFile ? join(dir, "gateway.db") : ":memory:");
  const ca = await createCa("main");
  const tuf = await TufRepo.open({ storage: store.tuf, keysDir: join(dir, "keys") });
  const gw: Gateway = {
    store,
    factory: "main",
    ca,
    adminToken: newToken(ca.fingerprint).token,
    publicUrl: "https://gw.test:8443",
    tuf,
    devices: new DeviceCache(store),
    apiTokens: new ApiTokenCache(store),
    sightings: new Sightings(store, 0),
    metrics: new Metrics(),
    diskFull: new DiskFull([{ label: "data", path: dir }], () => {}),
    pollingSeconds: 60,
  };
  const app = createApp(gw);
  const admin = (init: RequestInit = {}): RequestInit => ({
    ...init,
    headers: { authorization: `Bearer ${gw.adminToken}`, "content-type": "application/json", ...(init.headers as object) },
  });

  /** Registers a device with the admin token; returns its peer identity and the registration response. */
  async function register(over: Record<string, unknown> = {}, token = gw.adminToken) {
    const key = await makeDeviceCsr(typeof over.uuid === "string" ? over.uuid : crypto.randomUUID());
    const res = await app.request("/devices", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "dev", uuid: key.uuid, csr: key.csrPem, "hardware-id": "amd64-linux", ...over }),
    });
    if (res.status !== 201) throw new Error(`registration failed: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as RegistrationResponse;
    const cert = new x509.X509Certificate(body.certificate);
    const peer: PeerIdentity = { cn: key.uuid, serial: normalizeSerial(cert.serialNumber) };
    return { uuid: key.uuid, peer, body, keyPem: key.keyPem };
  }

  return {
    app,
    gw,
    admin,
    /** The store's file with `dbFile` (a second connection may hold its write lock), else undefined. */
    dbPath: opts.dbFile ? join(dir, "gateway.db") : undefined,
    register,
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const json = (body: unknown, method = "POST"): RequestInit => ({
  method,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

export const anEvent = (id: string, type = "EcuDownloadStarted", extra: Record<string, unknown> = {}) => ({
  id,
  deviceTime: new Date().toISOString(),
  eventType: { id: type, version: 2 },
  event: { correlationId: "c1", targetName: "amd64-linux-1", version: "1", ...extra },
});
