/** The gateway app through app.request(): routes, auth, validation, errors (no TLS). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Timeline } from "../../gateway/ui/pages/timeline.tsx";
import { droppedEventsNote } from "../../fioup/events/event.ts";
import type { UpdateList } from "../../lib/api/admin.ts";
import { anEvent, json, testGateway } from "./_fixture.ts";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { normalizeSerial } from "../../gateway/pki/keys.ts";
import { x509 } from "../../lib/x509/eager.ts";
import { makeDeviceCsr } from "./_device.ts";

let t: Awaited<ReturnType<typeof testGateway>>;
beforeAll(async () => {
  t = await testGateway();
}, 120_000);
afterAll(async () => {
  await t.close();
}, 120_000);

const entry = (version: string) => ({
  length: 0,
  hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { httpd: { uri: "h/main/httpd@sha256:" + "a".repeat(64) } } },
});

describe("registration", () => {
  test("POST /devices returns a certificate, the CA, root.json and sota.toml", async () => {
    const { body } = await t.register({ tags: ["beta"], apps: ["httpd"] });
    expect(body.certificate).toContain("BEGIN CERTIFICATE");
    expect(body.ca).toBe(t.gw.ca.certPem);
    expect((body.root as { signed: { _type: string } }).signed._type).toBe("root");
    expect(body.config).toContain('server = "https://gw.test:8443"');
    expect(body.config).toContain('primary_ecu_hardware_id = "amd64-linux"');
    expect(body.config).toContain('tags = "beta"');
    expect(body.config).toContain('compose_apps = "httpd"');
    expect(body.config).toContain("polling_seconds = 60");
  }, 60_000);

  test("a registration token works, sets the tags and counts its use; an unknown or expired one is refused", async () => {
    const res = await t.app.request("/admin/tokens", t.admin({ method: "POST", body: JSON.stringify({ tags: ["prod"], expiresIn: "1h" }) }));
    expect(res.status).toBe(201);
    const { token } = (await res.json()) as { token: string };
    expect(token.split(".")[1]).toBe(t.gw.ca.fingerprint);
    const { uuid } = await t.register({ tags: ["ignored"] }, token);
    expect((await t.gw.store.getDevice(uuid))!.tags).toEqual(["prod"]);
    const list = (await (await t.app.request("/admin/tokens", t.admin())).json()) as { tokens: { uses: number; tags: string[] }[] };
    expect(list.tokens.find((x) => x.tags[0] === "prod")!.uses).toBe(1);
    await expect(t.register({}, "bogus.token")).rejects.toThrow(/401/);
    await t.gw.store.createRegistrationToken({
      id: "old",
      secretHash: (await import("../../gateway/pki/tokens.ts")).hashSecret("expiredsecret"),
      name: null,
      tags: [],
      hardwareId: null,
      createdAt: "2020-01-01T00:00:00Z",
      expiresAt: "2020-01-02T00:00:00Z",
      maxUses: null,
      allowDeviceTags: false,
    });
    await expect(t.register({}, "expiredsecret.x")).rejects.toThrow(/expired/);
  }, 60_000);

  test("re-registering an existing uuid needs its current certificate or the admin token", async () => {
    const res = await t.app.request("/admin/tokens", t.admin({ method: "POST", body: JSON.stringify({ maxUses: 5 }) }));
    const { token } = (await res.json()) as { token: string };
    const d = await t.register({}, token);
    await expect(t.register({ uuid: d.uuid }, token)).rejects.toThrow(/409/);
    const again = await t.register({ uuid: d.uuid }); // admin token
    expect(again.peer.serial).not.toBe(d.peer.serial);
    // The old certificate is superseded.
    expect((await t.app.request("/device", {}, { peer: d.peer })).status).toBe(403);
    expect((await t.app.request("/device", {}, { peer: again.peer })).status).toBe(200);
  }, 60_000);

  test("two re-registrations of one device at once: one gets its certificate, the other 409 without spending a use, and the one answered 201 works", async () => {
    const res = await t.app.request("/admin/tokens", t.admin({ method: "POST", body: JSON.stringify({ maxUses: 5, name: "race" }) }));
    const { token } = (await res.json()) as { token: string };
    const d = await t.register({}, token);
    const again = () =>
      makeDeviceCsr(d.uuid).then((key) =>
        t.app.request(
          "/devices",
          { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: "dev", uuid: d.uuid, csr: key.csrPem, "hardware-id": "amd64-linux" }) },
          { peer: d.peer }, // over mTLS with its current certificate
        ),
      );
    const answers = await Promise.all([again(), again()]);
    expect(answers.map((r) => r.status).sort()).toEqual([201, 409]);
    const won = answers.find((r) => r.status === 201)!;
    const lost = answers.find((r) => r.status === 409)!;
    expect(((await lost.json()) as { error: string }).error).toContain(`device "${d.uuid}" was registered by another request meanwhile`);
    const cert = new x509.X509Certificate(((await won.json()) as RegistrationResponse).certificate);
    const peer = { cn: d.uuid, serial: normalizeSerial(cert.serialNumber) };
    expect((await t.app.request("/device", {}, { peer })).status).toBe(200);
    expect((await t.app.request("/device", {}, { peer: d.peer })).status).toBe(403);
    // The first registration and the winner spent a use each; the loser, refused at the write, none.
    const list = (await (await t.app.request("/admin/tokens", t.admin())).json()) as { tokens: { uses: number; name: string | null }[] };
    expect(list.tokens.find((x) => x.name === "race")!.uses).toBe(2);
  }, 60_000);

  test("a device re-registering with a registration token keeps its hardware id; an admin token may change it", async () => {
    const res = await t.app.request("/admin/tokens", t.admin({ method: "POST", body: JSON.stringify({ maxUses: 5 }) }));
    const { token } = (await res.json()) as { token: string };
    const d = await t.register({}, token);
    const again = (hwid: string, auth: string) =>
      makeDeviceCsr(d.uuid).then((key) =>
        t.app.request(
          "/devices",
          { method: "POST", headers: { authorization: `Bearer ${auth}`, "content-type": "application/json" }, body: JSON.stringify({ name: "dev", uuid: d.uuid, csr: key.csrPem, "hardware-id": hwid }) },
          { peer: d.peer }, // over mTLS with its current certificate: the owner
        ),
      );
    const moved = await again("rpi4", token);
    expect(moved.status).toBe(403);
    expect(((await moved.json()) as { error: string }).error).toContain('registered with hardware id "amd64-linux", not "rpi4"');
    expect((await t.gw.store.getDevice(d.uuid))!.hardwareId).toBe("amd64-linux");
    expect((await again("amd64-linux", token)).status).toBe(201);
    const byAdmin = await t.register({ uuid: d.uuid, "hardware-id": "rpi4" });
    expect(byAdmin.body.config).toContain('primary_ecu_hardware_id = "rpi4"');
    expect((await t.gw.store.getDevice(d.uuid))!.hardwareId).toBe("rpi4");
  }, 60_000);

  test("once the factory CA has ended, a registration is answered 503 saying so, not a bare internal error", async () => {
    const { createCa } = await import("../../gateway/pki/ca.ts");
    const gw = t.gw as { ca: typeof t.gw.ca };
    const ca = gw.ca;
    gw.ca = await createCa("main", { validDays: -0.5 }); // ended half a day ago
    try {
      const key = await makeDeviceCsr(crypto.randomUUID());
      const res = await t.app.request("/devices", {
        ...json({ name: "late", uuid: key.uuid, csr: key.csrPem, "hardware-id": "amd64-linux" }),
        headers: { authorization: `Bearer ${t.gw.adminToken}`, "content-type": "application/json" },
      });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toContain("The factory CA ended at");
    } finally {
      gw.ca = ca;
    }
  }, 60_000);

  test("a token bound to a hardware id refuses other hardware", async () => {
    const res = await t.app.request("/admin/tokens", t.admin({ method: "POST", body: JSON.stringify({ hwid: "arm64-linux" }) }));
    const { token } = (await res.json()) as { token: string };
    await expect(t.register({}, token)).rejects.toThrow(/403/);
    await t.register({ "hardware-id": "arm64-linux" }, token);
  }, 60_000);

  test("a CSR whose CN is not the uuid and a malformed body are refused with 400", async () => {
    const res = await t.app.request("/devices", {
      ...json({ name: "x", uuid: crypto.randomUUID(), csr: "-".repeat(80), "hardware-id": "h" }),
      headers: { authorization: `Bearer ${t.gw.adminToken}`, "content-type": "application/json" },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/CSR/);
    const bad = await t.app.request("/devices", {
      ...json({ name: "x" }),
      headers: { authorization: `Bearer ${t.gw.adminToken}`, "content-type": "application/json" },
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/Invalid request body/);
  }, 60_000);
});

describe("device API", () => {
  test("a device reads TUF metadata and its own record; headers update its target but not its tags", async () => {
    const d = await t.register();
    const ts = await t.app.request("/repo/timestamp.json", {}, { peer: d.peer });
    expect(ts.status).toBe(200);
    expect(((await ts.json()) as { signed: { _type: string } }).signed._type).toBe("timestamp");
    expect((await t.app.request("/repo/1.root.json", {}, { peer: d.peer })).status).toBe(200);
    expect((await t.app.request("/repo/99.root.json", {}, { peer: d.peer })).status).toBe(404);
    expect((await t.app.request("/repo/evil.json", {}, { peer: d.peer })).status).toBe(404);
    await t.app.request("/repo/targets.json", { headers: { "x-ats-tags": "main,beta", "x-ats-target": "amd64-linux-3" } }, { peer: d.peer });
    const me = (await (await t.app.request("/device", {}, { peer: d.peer })).json()) as Record<string, unknown>;
    expect(me).toMatchObject({ uuid: d.uuid, tags: [], currentTarget: "amd64-linux-3", hardwareId: "amd64-linux" });
    expect(me.last_seen).toBeString();
  }, 60_000);

  test("the admin's device list shows a check-in at once, as the device's own page does", async () => {
    // Sightings are written in batches; the list and `devices show` must not disagree in between.
    const d = await t.register();
    await t.app.request("/repo/timestamp.json", { headers: { "x-ats-target": "amd64-linux-4" } }, { peer: d.peer });
    const list = (await (await t.app.request("/admin/devices", t.admin())).json()) as { devices: { uuid: string; currentTarget: string | null; lastSeen: string | null }[] };
    expect(list.devices.find((x) => x.uuid === d.uuid)).toMatchObject({ currentTarget: "amd64-linux-4", lastSeen: expect.any(String) });
  }, 60_000);

  test("requests without a verified certificate get 401; unknown or superseded certificates 403", async () => {
    expect((await t.app.request("/repo/timestamp.json")).status).toBe(401);
    expect((await t.app.request("/events", json([]))).status).toBe(401);
    expect((await t.app.request("/device", {}, { peer: { cn: "stranger", serial: "1234" } })).status).toBe(403);
    const d = await t.register();
    expect((await t.app.request("/device", {}, { peer: { cn: d.uuid, serial: "ABCDEF" } })).status).toBe(403);
  }, 60_000);

  test("POST /events stores events idempotently and only for the calling device", async () => {
    const a = await t.register();
    const b = await t.register();
    const evs = [anEvent("e1"), anEvent("e2", "EcuInstallationCompleted", { success: true })];
    const r1 = await t.app.request("/events", json(evs), { peer: a.peer });
    expect(r1.status).toBe(200);
    expect(await r1.json()).toEqual({ received: 2, stored: 2 });
    expect(await (await t.app.request("/events", json(evs), { peer: a.peer })).json()).toEqual({ received: 2, stored: 0 });
    expect((await t.gw.store.listEvents(a.uuid)).length).toBe(2);
    expect((await t.gw.store.listEvents(b.uuid)).length).toBe(0);
    // The body carries no identity; a device cannot name another.
    await t.app.request("/events", json([{ ...anEvent("e3"), deviceId: b.uuid }]), { peer: a.peer });
    expect((await t.gw.store.listEvents(b.uuid)).length).toBe(0);
    const updates = (await (await t.app.request(`/admin/devices/${a.uuid}/updates`, t.admin())).json()) as { updates: { success?: boolean; events: unknown[] }[] };
    expect(updates.updates[0]).toMatchObject({ correlationId: "c1", success: true, targetName: "amd64-linux-1" });
  }, 60_000);

  test("a device's update history carries when the gateway received each event, and the timeline shows it beside a device clock that is off", async () => {
    const d = await t.register();
    const clock1970 = { ...anEvent("c-1"), deviceTime: "1970-01-01T00:00:17Z", event: { correlationId: "c-clock", targetName: "amd64-linux-2", version: "2" } };
    expect((await t.app.request("/events", json([clock1970, { ...anEvent("c-2"), event: { correlationId: "c-ok", targetName: "amd64-linux-2", version: "2" } }]), { peer: d.peer })).status).toBe(200);
    const { updates } = (await (await t.app.request(`/admin/devices/${d.uuid}/updates`, t.admin())).json()) as UpdateList;
    const received = updates[0]!.receivedAt![0]!;
    expect(Math.abs(Date.parse(received) - Date.now())).toBeLessThan(60_000);
    const html = String(Timeline({ updates }));
    expect(html).toContain(`<time datetime="${received}">${received}</time> (received; the device&#39;s clock said 1970-01-01T00:00:17Z)`);
    expect(html.match(/clock said/g)).toHaveLength(1); // an event dated right shows its own time alone
  }, 60_000);

  test("a device's note that it dropped queued events shows in its timeline as a gap, not as an update in progress", async () => {
    const d = await t.register();
    const note = droppedEventsNote({ dropped: 1234, from: "2026-10-01T00:00:00Z", to: "2026-11-01T00:00:00Z" }, "queue over 8 MiB");
    expect((await t.app.request("/events", json([note]), { peer: d.peer })).status).toBe(200);
    const { updates } = (await (await t.app.request(`/admin/devices/${d.uuid}/updates`, t.admin())).json()) as UpdateList;
    const html = String(Timeline({ updates }));
    expect(html).toContain("The device dropped 1234 older queued events, dated 2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z by its clock (queue over 8 MiB)");
    expect(html).not.toContain("in progress");
  }, 60_000);

  test("bad bodies get 400, oversized bodies 413, malformed JSON 400", async () => {
    const d = await t.register();
    expect((await t.app.request("/events", json([{ id: "x" }]), { peer: d.peer })).status).toBe(400);
    expect((await t.app.request("/events", json(Array(501).fill(anEvent("z"))), { peer: d.peer })).status).toBe(400);
    const huge = await t.app.request("/events", json([anEvent("big", "EcuDownloadStarted", { details: "x".repeat(300_000) })]), { peer: d.peer });
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as { error: string }).error).toMatch(/too large/);
    const malformed = await t.app.request("/events", { method: "POST", headers: { "content-type": "application/json" }, body: "[{" }, { peer: d.peer });
    expect(malformed.status).toBe(400);
    expect((await t.app.request("/apps-states", json({ apps: {} }), { peer: d.peer })).status).toBe(400);
    expect((await t.app.request("/system_info/network", json({ hostname: 1 }, "PUT"), { peer: d.peer })).status).toBe(400);
  }, 60_000);

  test("apps states and inventory are stored for the calling device and shown to the admin", async () => {
    const a = await t.register();
    const states = { deviceTime: "t", apps: { httpd: { uri: "r/main/httpd@sha256:1", state: "healthy", services: [{ name: "web", state: "running" }] } } };
    expect((await t.app.request("/apps-states", json(states), { peer: a.peer })).status).toBe(204);
    expect((await t.app.request("/system_info", json({ cpu: "x86" }, "PUT"), { peer: a.peer })).status).toBe(204);
    expect((await t.app.request("/system_info/network", json({ hostname: "h", mac: "m", local_ipv4: "10.0.0.2" }, "PUT"), { peer: a.peer })).status).toBe(204);
    expect((await t.app.request("/system_info/config", json("[pacman]\ntags = \"main\"\n", "PUT"), { peer: a.peer })).status).toBe(204);
    const shown = (await (await t.app.request(`/admin/devices/${a.uuid}`, t.admin())).json()) as Record<string, any>;
    expect(shown.appsStates).toEqual(states);
    expect(shown.systemInfo).toEqual({ hardware: { cpu: "x86" }, network: { hostname: "h", mac: "m", local_ipv4: "10.0.0.2" }, config: '[pacman]\ntags = "main"\n' });
  }, 60_000);

  test("a revoked device is refused at once and cannot register again", async () => {
    const d = await t.register();
    expect((await t.app.request("/device", {}, { peer: d.peer })).status).toBe(200);
    const r = await t.app.request(`/admin/devices/${d.uuid}/revoke`, t.admin({ method: "POST" }));
    expect(r.status).toBe(200);
    expect(((await r.json()) as { revokedAt: string }).revokedAt).toBeString();
    expect((await t.app.request("/device", {}, { peer: d.peer })).status).toBe(403);
    await expect(t.register({ uuid: d.uuid })).rejects.toThrow();
    expect((await t.app.request("/admin/devices/nope/revoke", t.admin({ method: "POST" }))).status).toBe(404);
  }, 60_000);
});

describe("admin API", () => {
  test("refuses a missing token with 401 and a wrong one with 403", async () => {
    expect((await t.app.request("/admin/devices")).status).toBe(401);
    expect((await t.app.request("/admin/devices", { headers: { authorization: "Bearer nope" } })).status).toBe(403);
    expect((await t.app.request("/admin/targets", { method: "POST", headers: { authorization: "Bearer nope" } })).status).toBe(403);
    const d = await t.register();
    expect((await t.app.request("/admin/devices", {}, { peer: d.peer })).status).toBe(401);
  }, 60_000);

  test("targets: add in one version, list, delete; invalid entries change nothing", async () => {
    const before = (await (await t.app.request("/admin/targets", t.admin())).json()) as { version: number };
    const add = await t.app.request("/admin/targets", t.admin({ method: "POST", body: JSON.stringify({ targets: { "amd64-linux-1": entry("1"), "amd64-linux-2": entry("2") } }) }));
    expect(add.status).toBe(200);
    const after = (await add.json()) as { version: number; targets: Record<string, unknown> };
    expect(after.version).toBe(before.version + 1);
    expect(Object.keys(after.targets).sort()).toEqual(["amd64-linux-1", "amd64-linux-2"]);
    const bad = await t.app.request("/admin/targets", t.admin({ method: "POST", body: JSON.stringify({ targets: { "amd64-linux-3": entry("3"), "x-4": { length: 0 } } }) }));
    expect(bad.status).toBe(400);
    expect(Object.keys(((await (await t.app.request("/admin/targets", t.admin())).json()) as { targets: object }).targets)).toHaveLength(2);
    expect((await t.app.request("/admin/targets/amd64-linux-1", t.admin({ method: "DELETE" }))).status).toBe(200);
    expect((await t.app.request("/admin/targets/amd64-linux-1", t.admin({ method: "DELETE" }))).status).toBe(404);
    const d = await t.register();
    const targets = (await (await t.app.request("/repo/targets.json", {}, { peer: d.peer })).json()) as { signed: { targets: object } };
    expect(Object.keys(targets.signed.targets)).toEqual(["amd64-linux-2"]);
  }, 60_000);

  test("keys rotate publishes a new root version", async () => {
    const res = await t.app.request("/admin/keys/rotate", t.admin({ method: "POST", body: JSON.stringify({ role: "timestamp" }) }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { rootVersion: number }).rootVersion).toBeGreaterThanOrEqual(2);
    expect((await t.app.request("/admin/keys/rotate", t.admin({ method: "POST", body: JSON.stringify({ role: "nope" }) }))).status).toBe(400);
  }, 60_000);

  test("devices list pages", async () => {
    const res = (await (await t.app.request("/admin/devices?limit=2", t.admin())).json()) as { devices: unknown[]; next?: string };
    expect(res.devices).toHaveLength(2);
    expect(res.next).toBeString();
    expect((await t.app.request("/admin/devices?limit=x", t.admin())).status).toBe(400);
  }, 60_000);
});

describe("public endpoints", () => {
  test("/healthz, /ca.pem, /openapi.json and /metrics answer without auth", async () => {
    expect(await (await t.app.request("/healthz")).json()).toEqual({ ok: true });
    expect(await (await t.app.request("/ca.pem")).text()).toBe(t.gw.ca.certPem);
    const doc = (await (await t.app.request("/openapi.json")).json()) as { openapi: string; paths: Record<string, any> };
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.paths["/events"].post.requestBody.content["application/json"].schema.type).toBe("array");
    const m = await (await t.app.request("/metrics")).text();
    expect(m).toMatch(/gateway_requests_total\{route="\/events",status="200"\} \d+/);
    expect(m).toMatch(/gateway_devices \d+/);
    expect(m).toMatch(/gateway_events \d+/);
    // Each role's expiry, as signed in the metadata devices get.
    for (const role of ["root", "targets", "snapshot", "timestamp"]) {
      const served = (await (await t.app.request(`/repo/${role}.json`, { headers: { authorization: `Bearer ${t.gw.adminToken}` } })).json()) as { signed: { expires: string } };
      expect(m).toContain(`gateway_tuf_expiry_timestamp_seconds{role="${role}"} ${Math.floor(Date.parse(served.signed.expires) / 1000)}\n`);
    }
    expect((await t.app.request("/nope")).status).toBe(404);
  }, 60_000);
});
