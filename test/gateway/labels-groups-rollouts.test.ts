/**
 * Labels, groups and rollouts the way an operator drives them: the `gateway` CLI against a running
 * gateway over TLS (PostgreSQL with OTA_TEST_DB=postgres), with devices registered with their own
 * certificates. The tests build on each other in file order (labels, then groups from them, then
 * rollouts to a group), as an operator's session would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";
import { gatewayRun } from "../harness/cli.ts";

let g: GatewayHandle;
let prod: TlsDevice[];
let dev: TlsDevice[];

const cli = (...args: string[]) => gatewayRun([...args, "--data", g.dataDir]);
const json = (...args: string[]) => {
  const r = cli(...args, "--format", "json");
  if (r.code !== 0) throw new Error(`gateway ${args.join(" ")} exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out);
};

beforeAll(async () => {
  g = await startGateway();
  prod = await Promise.all(Array.from({ length: 4 }, () => registerDevice(g.url, g.adminToken, g.caPem, ["prod"])));
  dev = await Promise.all(Array.from({ length: 2 }, () => registerDevice(g.url, g.adminToken, g.caPem, ["dev"])));
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 60_000);

describe("gateway devices label", () => {
  test("sets and removes labels; the device row shows them; bad input exits 2, an unknown device 3", () => {
    const [a] = prod;
    expect(json("devices", "label", a!.uuid, "region=eu", "ring=canary").labels).toEqual({ region: "eu", ring: "canary" });
    expect(json("devices", "label", a!.uuid, "site=berlin 2", "--remove", "ring").labels).toEqual({ region: "eu", site: "berlin 2" });
    expect(json("devices", "show", a!.uuid).labels).toEqual({ region: "eu", site: "berlin 2" });
    expect(cli("devices", "show", a!.uuid).out).toContain(`labels:      region=eu, site="berlin 2"`);

    const bad = cli("devices", "label", a!.uuid, "Region=eu");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('Invalid label key "Region"');
    expect(cli("devices", "label", a!.uuid, "novalue").err).toContain("expected key=value");
    expect(cli("devices", "label", a!.uuid).code).toBe(2);
    const unknown = cli("devices", "label", "no-such-device", "a=b");
    expect(unknown.code).toBe(3);
    expect(unknown.err).toContain('Device "no-such-device" not found');
  });
});

describe("gateway groups", () => {
  test("a static group holds registered devices only; a dynamic group follows its query when used", async () => {
    const [a, b, c] = prod;
    json("devices", "label", b!.uuid, "region=eu");
    json("devices", "label", dev[0]!.uuid, "region=eu");

    const pilot = json("groups", "create", "pilot", a!.uuid, c!.uuid);
    expect(pilot).toMatchObject({ name: "pilot", kind: "static", devices: 2, members: [a!.uuid, c!.uuid].sort() });
    const stranger = crypto.randomUUID(); // well-formed: a malformed uuid is bad usage (exit 2) before anything is sent
    const unknown = cli("groups", "add", "pilot", stranger);
    expect(unknown.code).toBe(3);
    expect(unknown.err).toContain(`Unknown device "${stranger}"`);
    expect(json("groups", "add", "pilot", b!.uuid)).toMatchObject({ added: 1, devices: 3 });
    expect(json("groups", "remove", "pilot", c!.uuid)).toMatchObject({ removed: 1, devices: 2 });

    const eu = json("groups", "create", "eu-prod", "--query", "region=eu tag=prod");
    expect(eu).toMatchObject({ kind: "dynamic", query: "region=eu tag=prod", members: [a!.uuid, b!.uuid].sort() });
    json("devices", "label", c!.uuid, "region=eu"); // counts from its next use on
    expect(json("groups", "show", "eu-prod").members).toEqual([a!.uuid, b!.uuid, c!.uuid].sort());
    expect(cli("groups", "show", "eu-prod").out).toContain("devices: 3 (matching now)");
    const page = async (q: string) => (await (await g.adminFetch(`/admin/groups/eu-prod?${q}`)).json()) as { members: string[]; next?: string; devices: number };
    const three = [a!.uuid, b!.uuid, c!.uuid].sort();
    const p1 = await page("limit=2");
    expect(p1).toMatchObject({ members: three.slice(0, 2), next: three[1], devices: 3 });
    const p2 = await page(`limit=2&after=${p1.next}`);
    expect(p2.members).toEqual(three.slice(2));
    expect(p2.next).toBeUndefined();
    const dynAdd = cli("groups", "add", "eu-prod", a!.uuid);
    expect(dynAdd.code).toBe(3);
    expect(dynAdd.err).toContain("is dynamic");

    // The dashboard's device list filters by label and by group the same way.
    const fleet = async (q: string) =>
      ((await (await g.adminFetch(`/admin/fleet/devices?${q}`)).json()) as { devices: { uuid: string }[] }).devices.map((d) => d.uuid).sort();
    expect(await fleet("group=eu-prod")).toEqual([a!.uuid, b!.uuid, c!.uuid].sort());
    expect(await fleet(`group=eu-prod&label=${encodeURIComponent("site=berlin 2")}`)).toEqual([a!.uuid]);
    expect(await fleet("group=pilot")).toEqual([a!.uuid, b!.uuid].sort());
    expect((await g.adminFetch("/admin/fleet/devices?group=nope")).status).toBe(400);
    // Every filter left blank, as docs/dashboard.md writes the query and a form sends it: no filter at all.
    const blank = await g.adminFetch("/admin/fleet/devices?q=&uuid=&tag=&hwid=&target=&label=&group=&status=&seenWithin=&unseenFor=&sort=&dir=&limit=&offset=");
    const all = (await (await g.adminFetch("/admin/fleet/devices")).json()) as { total: number };
    expect({ status: blank.status, total: blank.status === 200 ? ((await blank.json()) as { total: number }).total : await blank.text() }).toEqual({ status: 200, total: all.total });

    const list = json("groups", "list").groups as { name: string; devices: number }[];
    expect(list.map((x) => [x.name, x.devices])).toEqual([["eu-prod", 3], ["pilot", 2]]);
    const badQuery = cli("groups", "create", "x", "--query", "region~eu");
    expect(badQuery.code).toBe(2);
    expect(badQuery.err).toContain("only name~text");
    const badName = cli("groups", "create", "eu prod");
    expect({ code: badName.code, err: badName.err }).toEqual({ code: 2, err: expect.stringContaining('group name: expected a group name (letters, digits, . _ -; at most 63, starting with a letter or digit), got "eu prod"') });
    expect(cli("groups", "create", "pilot").code).toBe(3); // exists: 409
    expect(json("groups", "delete", "pilot")).toEqual({ name: "pilot" });
    expect(cli("groups", "show", "pilot").err).toContain('Group "pilot" not found');
  });
});

describe("gateway rollouts", () => {
  test("create, show, pause, resume, advance, cancel; one active rollout per version; bad waves never reach the gateway", async () => {
    const made = cli("rollouts", "create", "--target", "7", "--tag", "prod", "--waves", "50%,100%", "--soak", "1h", "--max-failures", "10%", "--first", prod[3]!.uuid, "--format", "json");
    // Made before its publish (nothing is published here): which version that publish makes unless told is said.
    expect({ code: made.code, err: made.err }).toEqual({
      code: 0,
      err: "note: the gateway has no target of version 7 yet: the next publish makes version 1 (gateway publish --version 7 makes 7)\n",
    });
    const created = JSON.parse(made.out);
    expect(created).toMatchObject({ targetVersion: "7", tag: "prod", waves: [50, 100], soakS: 3600, maxFailuresPct: 10, state: "running", wave: 0 });
    expect(created.counts).toEqual([
      { wave: 0, status: "pending", devices: 2 },
      { wave: 1, status: "pending", devices: 2 },
    ]);
    const id = created.id as string;
    const shown = cli("rollouts", "show", id);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain(`rollout:  ${id}  RUNNING`);
    expect(shown.out).toMatch(/settings: soak 1h, max failures 10%/);

    const twin = cli("rollouts", "create", "--target", "7", "--group", "eu-prod", "--waves", "100%");
    expect(twin.code).toBe(3);
    expect(twin.err).toContain("409");

    expect(json("rollouts", "pause", id)).toMatchObject({ state: "paused" });
    expect(json("rollouts", "resume", id)).toMatchObject({ state: "running" });
    expect(json("rollouts", "advance", id)).toMatchObject({ wave: 1 });
    expect(cli("rollouts", "advance", id).code).toBe(3); // the last wave: 409
    const events = (json("rollouts", "show", id).events as { kind: string }[]).map((e) => e.kind);
    expect(events).toEqual(expect.arrayContaining(["created", "paused", "resumed"]));
    expect(json("rollouts", "list", "--active").rollouts.map((r: { id: string }) => r.id)).toEqual([id]);
    expect(json("rollouts", "cancel", id)).toMatchObject({ state: "cancelled" });
    expect(json("rollouts", "list", "--active").rollouts).toEqual([]);
    expect(cli("rollouts", "list").out).toContain(id);
    expect(cli("rollouts", "show", "nope").code).toBe(3);

    for (const [waves, why] of [["10%,5%,100%", "must increase"], ["10%,50%", "must be 100%"], ["abc", "percent"]] as const) {
      const r = cli("rollouts", "create", "--target", "8", "--tag", "prod", "--waves", waves, "--server", "https://127.0.0.1:1", "--token", "x");
      expect(r.code).toBe(2); // refused before any network call (the server named here does not exist)
      expect(r.err).toContain(why);
    }
    expect(cli("rollouts", "create", "--target", "8", "--waves", "100%").err).toContain("exactly one of --group GROUP or --tag TAG");
    expect(cli("rollouts", "create", "--target", "8", "--tag", "prod", "--waves", "100%", "--soak", "soon").err).toContain('Invalid duration "soon"');
    expect(cli("rollouts", "create", "--target", "8", "--tag", "prod", "--waves", "100%", "--window", "Sat 25:00-26:00").code).toBe(2);
    // A tag or group no device can have is bad usage, said before any network call.
    for (const [flag, value, rule] of [["--tag", "prod eu", "expected a tag"], ["--group", "eu/prod", "expected a group name"]] as const) {
      const r = cli("rollouts", "create", "--target", "8", flag, value, "--waves", "100%", "--server", "https://127.0.0.1:1", "--token", "x");
      expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringContaining(`${flag}: ${rule}`) });
    }
    const badDeviceTag = cli("devices", "tag", crypto.randomUUID(), "main,eu/west", "--server", "https://127.0.0.1:1", "--token", "x");
    expect({ code: badDeviceTag.code, err: badDeviceTag.err }).toEqual({ code: 2, err: expect.stringContaining('tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"') });
    const badTokenTag = cli("tokens", "create", "--tag", "eu/west", "--server", "https://127.0.0.1:1", "--token", "x");
    expect({ code: badTokenTag.code, err: badTokenTag.err }).toEqual({ code: 2, err: expect.stringContaining('--tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"') });
    const noGroup = cli("rollouts", "create", "--target", "8", "--group", "nope", "--waves", "100%");
    expect(noGroup.code).toBe(3);
    expect(noGroup.err).toContain('Unknown group "nope"');
  });

  test("a viewer token reads rollouts and groups but may not change them; /openapi.json lists the routes", async () => {
    const { token } = json("tokens", "create", "--role", "viewer");
    const as = (path: string, init: RequestInit = {}) => g.adminFetch(path, { ...init, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
    expect((await as("/admin/rollouts")).status).toBe(200);
    expect((await as("/admin/groups")).status).toBe(200);
    // A client can ask which role its token has before it starts a job (gateway publish does).
    // And where devices reach the gateway (its --public-url), under which publish names its registry.
    expect(await (await as("/admin/whoami")).json()).toEqual({ role: "viewer", publicUrl: g.url, canSignTargets: true });
    const publisher = json("tokens", "create", "--role", "publish").token;
    expect(await (await g.adminFetch("/admin/whoami", { headers: { authorization: `Bearer ${publisher}` } })).json()).toEqual({ role: "publish", publicUrl: g.url, canSignTargets: true });
    expect((await as("/admin/groups", { method: "POST", body: JSON.stringify({ name: "v" }) })).status).toBe(403);
    const rollout = await as("/admin/rollouts", { method: "POST", body: JSON.stringify({ target: "9", tag: "prod", waves: [100] }) });
    expect({ status: rollout.status, ...((await rollout.json()) as { error: string }) }).toEqual({ status: 403, error: "A viewer token may not POST /admin/rollouts: it needs an admin token" });
    // A publish, which a publish token may make too, says so.
    const publish = await as("/admin/targets", { method: "POST", body: "{}" });
    expect({ status: publish.status, ...((await publish.json()) as { error: string }) }).toEqual({ status: 403, error: "A viewer token may not POST /admin/targets: it needs an admin token or a publish token" });
    const labels = await g.adminFetch(`/admin/devices/${prod[0]!.uuid}/labels`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ set: { a: "1" }, remove: ["a"] }),
    });
    expect(labels.status).toBe(400);
    expect(await labels.json()).toEqual({ error: 'Label "a" is both set and removed' });
    const doc = (await (await g.adminFetch("/openapi.json")).json()) as { paths: Record<string, unknown> };
    for (const p of ["/admin/whoami", "/admin/devices/{uuid}/labels", "/admin/groups", "/admin/groups/{name}/members", "/admin/rollouts", "/admin/rollouts/{id}/advance"])
      expect(Object.keys(doc.paths)).toContain(p);
  });
});
