/**
 * POST /admin/targets signs only entries every device can check (400 with the reason
 * otherwise), and refuses a write made from a stale targets version (409), so two
 * publishers racing cannot overwrite each other's target.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { testGateway } from "./_fixture.ts";

const DIGEST = `sha256:${"b".repeat(64)}`;
const good = (version: number, over: Record<string, unknown> = {}): TargetEntry =>
  ({
    length: 0,
    hashes: { sha256: EMPTY_SHA256 },
    custom: { version: String(version), hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `127.0.0.1:8443/main/web@${DIGEST}` } } },
    ...over,
  }) as TargetEntry;
const withApp = (uri: string) => good(9, { custom: { ...good(9).custom, docker_compose_apps: { web: { uri } } } });

let t: Awaited<ReturnType<typeof testGateway>>;
beforeAll(async () => {
  t = await testGateway();
});
afterAll(async () => {
  await t?.close();
});

const post = (body: string) => t.app.request("/admin/targets", t.admin({ method: "POST", body }));
const current = async () => (await (await t.app.request("/admin/targets", t.admin())).json()) as { version: number; targets: Record<string, TargetEntry> };

describe("POST /admin/targets refuses entries it must not sign", () => {
  // Raw JSON text, so numbers such as 1e300 reach the gateway as a client would send them.
  const cases: [string, string, RegExp][] = [
    ["length 1e300", JSON.stringify({ targets: { "amd64-linux-9": good(9) } }).replace('"length":0', '"length":1e300'), /length is 1e\+300/],
    ["length 2^53", JSON.stringify({ targets: { "amd64-linux-9": good(9, { length: 2 ** 53 }) } }), /length is 9007199254740992/],
    ["a non-integer length", JSON.stringify({ targets: { "amd64-linux-9": good(9, { length: 1.5 }) } }), /length/],
    ["a negative length", JSON.stringify({ targets: { "amd64-linux-9": good(9, { length: -1 }) } }), /length/],
    ["an unsafe number in custom", JSON.stringify({ targets: { "amd64-linux-9": good(9, { custom: { ...good(9).custom, build: 1e300 } }) } }), /custom\.build is 1e\+300/],
    ["a float in custom", JSON.stringify({ targets: { "amd64-linux-9": good(9, { custom: { ...good(9).custom, ratio: 0.5 } }) } }), /custom\.ratio is 0\.5/],
    ["no hashes", JSON.stringify({ targets: { "amd64-linux-9": good(9, { hashes: {} }) } }), /hashes\.sha256 is missing/],
    ["an empty sha256", JSON.stringify({ targets: { "amd64-linux-9": good(9, { hashes: { sha256: "" } }) } }), /hashes\.sha256 "" is not 64/],
    ["a short sha256", JSON.stringify({ targets: { "amd64-linux-9": good(9, { hashes: { sha256: "abc" } }) } }), /hashes\.sha256 "abc"/],
    ["an unknown hash algorithm", JSON.stringify({ targets: { "amd64-linux-9": good(9, { hashes: { sha256: EMPTY_SHA256, md5: "x" } }) } }), /hashes\.md5: unknown/],
    ["an app by tag", JSON.stringify({ targets: { "amd64-linux-9": withApp("127.0.0.1:8443/main/web:latest") } }), /uri "127\.0\.0\.1:8443\/main\/web:latest" is not pinned/],
    ["an app by repository only", JSON.stringify({ targets: { "amd64-linux-9": withApp("127.0.0.1:8443/main/web") } }), /is not pinned/],
    ["an app by tag and digest", JSON.stringify({ targets: { "amd64-linux-9": withApp(`127.0.0.1:8443/main/web:1@${DIGEST}`) } }), /is not pinned/],
    ["an app by a sha512 digest", JSON.stringify({ targets: { "amd64-linux-9": withApp(`127.0.0.1:8443/main/web@sha512:${"c".repeat(128)}`) } }), /is not pinned/],
    ["an app with an empty uri", JSON.stringify({ targets: { "amd64-linux-9": withApp("") } }), /is not pinned/],
  ];
  for (const [what, body, reason] of cases) {
    test(`${what}: 400 with the reason, nothing signed`, async () => {
      const before = await current();
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(reason);
      expect((await current()).version).toBe(before.version);
    });
  }

  test("a safe entry is signed", async () => {
    const res = await post(JSON.stringify({ targets: { "amd64-linux-9": good(9) } }));
    expect(res.status).toBe(200);
    expect((await current()).targets["amd64-linux-9"]).toEqual(good(9));
  });
});

describe("POST /admin/targets with expectedVersion", () => {
  test("a stale version answers 409 with the current one; the fresh one is accepted", async () => {
    const { version } = await current();
    expect((await post(JSON.stringify({ targets: { "amd64-linux-10": good(10) }, expectedVersion: version }))).status).toBe(200);
    const stale = await post(JSON.stringify({ targets: { "amd64-linux-11": good(11) }, expectedVersion: version }));
    expect(stale.status).toBe(409);
    expect(await stale.json()).toMatchObject({ version: version + 1, error: expect.stringMatching(/targets\.json is at version/) });
    expect((await current()).targets["amd64-linux-11"]).toBeUndefined();
    expect((await post(JSON.stringify({ targets: { "amd64-linux-11": good(11) }, expectedVersion: version + 1 }))).status).toBe(200);
  });

  test("of writers racing from the same version exactly one wins; each loser is told to read again", async () => {
    const { version } = await current();
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => post(JSON.stringify({ targets: { "amd64-linux-20": good(20 + i) }, expectedVersion: version }))),
    );
    expect(answers.map((r) => r.status).sort()).toEqual([200, 409, 409, 409, 409, 409]);
    expect((await current()).version).toBe(version + 1);
  });
});

describe("POST /admin/targets never changes a signed target", () => {
  test("other content under an existing name answers 409 naming it, for a publish and an admin token; the same content again is accepted", async () => {
    const made = await t.app.request("/admin/tokens", t.admin({ method: "POST", body: JSON.stringify({ role: "publish", name: "ci" }) }));
    expect(made.status).toBe(201);
    const { token } = (await made.json()) as { token: string };
    const as = (bearer: string, body: unknown) =>
      t.app.request("/admin/targets", { method: "POST", headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    const signed = good(30);
    expect((await as(token, { targets: { "amd64-linux-30": signed } })).status).toBe(200);
    // A publish retried after a lost answer re-posts the same entries (keys in another order here): accepted.
    const reordered = { custom: signed.custom, hashes: signed.hashes, length: signed.length };
    expect((await as(token, { targets: { "amd64-linux-30": reordered } })).status).toBe(200);
    const before = await current();
    // What the review did with a publish token: other apps and an extra tag under the same name and version.
    const evil = good(30, { custom: { ...signed.custom, tags: ["main", "evil"], docker_compose_apps: { web: { uri: `127.0.0.1:8443/main/evil@${DIGEST}` } } } });
    for (const bearer of [token, t.gw.adminToken]) {
      for (const body of [{ targets: { "amd64-linux-30": evil } }, { targets: { "amd64-linux-31": good(31), "amd64-linux-30": evil } }]) {
        const res = await as(bearer, body);
        expect({ status: res.status, body: await res.json() }).toEqual({
          status: 409,
          body: { error: expect.stringMatching(/^Target "amd64-linux-30" is signed already with other content, and a target never changes once signed/) },
        });
      }
    }
    // Nothing signed: not the change, nor the new target posted with it.
    expect(await current()).toEqual(before);
    // The admin's way: remove it, then add it again.
    expect((await t.app.request("/admin/targets/amd64-linux-30", t.admin({ method: "DELETE" }))).status).toBe(200);
    expect((await as(t.gw.adminToken, { targets: { "amd64-linux-30": evil } })).status).toBe(200);
    expect((await current()).targets["amd64-linux-30"]).toEqual(evil);
  });
});
