import { expect, setSystemTime, test } from "bun:test";
import { SqliteStore } from "../store/sqlite.ts";
import { ApiTokenCache, apiTokenUsable } from "./api-tokens.ts";

test("ApiTokenCache: another replica's revocation shows within the TTL however this replica's wall clock steps", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const now = Date.now();
    const row = { id: "t1", secretHash: "h1", role: "publish" as const, name: null, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 86_400_000).toISOString() };
    await store.createApiToken(row);
    const cache = new ApiTokenCache(store, { ttlMs: 300 });
    expect(apiTokenUsable(await cache.byHash("h1"))).toBe(true);
    setSystemTime(new Date(now - 3_600_000)); // NTP steps this replica's clock back an hour
    await store.revokeApiToken("t1", new Date(now).toISOString()); // through another replica
    await Bun.sleep(350);
    expect(apiTokenUsable(await cache.byHash("h1"))).toBe(false);
  } finally {
    setSystemTime();
    await store.close();
  }
});
