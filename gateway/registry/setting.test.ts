import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { checkRegistrySetting, recordRegistrySetting, RegistrySettingMismatchError, type SettingStore } from "./setting.ts";

/** gateway_meta as claimMeta keeps it: the first value written under a key stays. */
function memoryStore(): SettingStore {
  const meta = new Map<string, string>();
  return {
    readMeta: async (key) => meta.get(key),
    claimMeta: async (key, value) => {
      await Bun.sleep(1); // the round trip in which another replica's claim lands
      if (!meta.has(key)) meta.set(key, value);
      return meta.get(key)!;
    },
    forgetMeta: async (key, value) => meta.get(key) === value && meta.delete(key),
  };
}

const where = { dataDir: "/var/lib/gateway", db: "postgres://db/gw" };
const embedded = (dir: string) => ({ kind: "embedded" as const, dir, flag: true });
const startOn = async (store: SettingStore, dir: string) => {
  if (await checkRegistrySetting(store, embedded(dir), where)) return;
  mkdirSync(dir, { recursive: true }); // as gateway.ts makes it between the two
  await recordRegistrySetting(store, embedded(dir), where, () => {});
};

describe("replicas' first starts at one moment", () => {
  test("on one new storage, reached by two paths, agree on one id", async () => {
    const store = memoryStore();
    const dir = join(await tempDir("shared-"), "registry");
    mkdirSync(dir);
    const mount = join(await tempDir("mount-"), "registry");
    symlinkSync(dir, mount);
    await Promise.all([startOn(store, dir), startOn(store, mount), startOn(store, dir)]);
    const id = readFileSync(join(dir, "gateway-registry-id"), "utf8").trim();
    expect(JSON.parse((await store.readMeta("registry_setting"))!).id).toBe(id);
    expect(await checkRegistrySetting(store, embedded(mount), where)).toBe(true);
  });

  test("on two storages: the one recorded second is refused, and the id it wrote is removed", async () => {
    const store = memoryStore();
    const [a, b] = [join(await tempDir("regdir4-"), "registry"), join(await tempDir("regdir5-"), "registry")];
    const results = await Promise.allSettled([startOn(store, a), startOn(store, b)]);
    const refused = results.findIndex((r) => r.status === "rejected");
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    expect((results[refused] as PromiseRejectedResult).reason).toBeInstanceOf(RegistrySettingMismatchError);
    expect(existsSync(join([a, b][refused]!, "gateway-registry-id"))).toBe(false);
    expect(existsSync(join([a, b][1 - refused]!, "gateway-registry-id"))).toBe(true);
  });
});
