/**
 * What the `gateway` admin CLI says about values a user gets wrong, against one running gateway:
 * a revoked device counts in no group (as in no rollout), and a value the gateway's own schema
 * would refuse is bad usage (exit 2, naming the flag) before anything is sent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
/** A server nobody listens on, with a well-formed token: a command that gets as far as the network fails there, not with exit 2. */
const nowhere = () => ["--server", "https://127.0.0.1:1", "--token", g.adminToken];
let g: GatewayHandle;
let devs: TlsDevice[];

async function cli(...args: string[]) {
  const p = Bun.spawn([process.execPath, MAIN, ...args, ...(args.includes("--server") ? [] : ["--data", g.dataDir])], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

beforeAll(async () => {
  g = await startGateway();
  devs = await Promise.all(Array.from({ length: 3 }, () => registerDevice(g.url, g.adminToken, g.caPem, ["pilot"])));
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 60_000);

describe("a static group with a revoked member", () => {
  test("counts, lists and releases only its non-revoked devices; adding a revoked device is refused", async () => {
    const [a, b, c] = devs.map((d) => d.uuid) as [string, string, string];
    expect((await cli("groups", "create", "pilot", a, b, c)).code).toBe(0);
    expect((await cli("devices", "revoke", c)).code).toBe(0);

    const shown = await cli("groups", "show", "pilot");
    expect(shown.out).toContain("devices: 2\n");
    expect(shown.out).not.toContain(c);
    const listed = await cli("groups", "list", "--format", "json");
    expect(JSON.parse(listed.out).groups).toEqual([expect.objectContaining({ name: "pilot", devices: 2 })]);
    expect((await cli("groups", "add", "pilot", a)).out).toBe("pilot: 0 added (1 already in it), 2 devices\n");

    const revoked = await cli("groups", "add", "pilot", c);
    expect(revoked.code).toBe(3);
    expect(revoked.err).toContain(`Revoked device "${c}": a revoked device is never in a group's audience`);
    expect((await cli("groups", "create", "again", a, c)).err).toContain(`Revoked device "${c}"`);
    expect((await cli("groups", "remove", "pilot", b)).out).toBe("pilot: 1 removed, 1 devices\n");
    expect((await cli("groups", "remove", "pilot", b)).out).toBe("pilot: 0 removed (1 not in it), 1 devices\n");
    expect((await cli("groups", "add", "pilot", b)).out).toBe("pilot: 1 added, 2 devices\n");

    const rollout = await cli("rollouts", "create", "--target", "5", "--group", "pilot", "--waves", "100%", "--format", "json");
    expect(rollout.code).toBe(0);
    expect(JSON.parse(rollout.out).counts.reduce((n: number, x: { devices: number }) => n + x.devices, 0)).toBe(2);
  });
});

describe("values the gateway would refuse", () => {
  test("are bad usage (exit 2) naming the flag, before anything is sent", async () => {
    const uuid = crypto.randomUUID();
    const cases: [string[], string][] = [
      [["rollouts", "create", "--target", "abc", "--tag", "pilot", "--waves", "100%"], '--target: expected a target version: 1-15 digits, as `fioup check` lists them, got "abc"'],
      [["rollouts", "create", "--target", "5", "--tag", "pilot", "--waves", "100%", "--first", `${uuid},notuuid`], '--first: expected a lower-case RFC 4122 uuid (8-4-4-4-12 hex digits with dashes), got "notuuid"'],
      [["groups", "add", "pilot", uuid, "not-a-uuid"], 'device uuid: expected a lower-case RFC 4122 uuid (8-4-4-4-12 hex digits with dashes), got "not-a-uuid"'],
      [["groups", "remove", "pilot", uuid.toUpperCase()], "device uuid: expected a lower-case RFC 4122 uuid"],
      [["groups", "create", "pilot2", "not-a-uuid"], "device uuid: expected a lower-case RFC 4122 uuid"],
      [["tokens", "create", "--name", "n".repeat(3000)], "--name: expected string length less or equal to 128"],
      [["devices", "tag", uuid, Array.from({ length: 300 }, (_, i) => `t${i}`).join(",")], "tag list: at most 32 tags, got 300"],
      [["devices", "list", "--after", "garbage"], '--after: expected a lower-case RFC 4122 uuid (8-4-4-4-12 hex digits with dashes), got "garbage"'],
      [["groups", "show", "pilot", "--after", "zzz"], '--after: expected a lower-case RFC 4122 uuid (8-4-4-4-12 hex digits with dashes), got "zzz"'],
      [["devices", "label", uuid, "ring=a", "site=x", "ring=b"], 'label "ring" is given two values: give it one'],
    ];
    const reached = await cli("groups", "list", ...nowhere());
    expect(reached.code).not.toBe(0);
    expect(reached.code).not.toBe(2);
    const results = await Promise.all(cases.map(([args]) => cli(...args, ...nowhere())));
    const wrong = results.flatMap((r, i) => (r.code === 2 && r.err.includes(cases[i]![1]) ? [] : [`gateway ${cases[i]![0].slice(0, 3).join(" ")}...: exit ${r.code}: ${r.err.trim()}`]));
    expect(wrong).toEqual([]);
  });

  test("an unknown but well-formed uuid or group is still the gateway's refusal (exit 3)", async () => {
    const unknownDevice = await cli("groups", "add", "pilot", "00000000-0000-4000-8000-000000000000");
    expect(unknownDevice.code).toBe(3);
    expect(unknownDevice.err).toContain('Unknown device "00000000-0000-4000-8000-000000000000"');
    const unknownGroup = await cli("rollouts", "create", "--target", "6", "--group", "nogroup", "--waves", "100%");
    expect(unknownGroup.code).toBe(3);
    expect(unknownGroup.err).toContain('Unknown group "nogroup"');
    const page = await cli("groups", "show", "pilot", "--after", "00000000-0000-4000-8000-000000000000");
    expect(page.code).toBe(0);
    expect(page.out).toContain("devices: 2\n");
  });
});
