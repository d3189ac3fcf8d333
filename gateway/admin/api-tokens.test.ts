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

test("ApiTokenCache: a token read while this replica revokes it answers that request, and is not kept", async () => {
  const store = await SqliteStore.open(":memory:");
  try {
    const now = Date.now();
    await store.createApiToken({ id: "t2", secretHash: "h2", role: "publish", name: null, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 86_400_000).toISOString() });
    // A store whose answer comes late (PostgreSQL's round trip), holding the row as it was.
    const release = Promise.withResolvers<void>();
    const read = store.getApiTokenByHash.bind(store);
    store.getApiTokenByHash = async (hash) => {
      const row = await read(hash);
      await release.promise;
      return row;
    };
    const cache = new ApiTokenCache(store, { ttlMs: 60_000 });
    const asked = cache.byHash("h2");
    await Bun.sleep(10); // the read is under way
    await store.revokeApiToken("t2", new Date().toISOString());
    cache.invalidate(); // `gateway tokens revoke` through this replica, while the read is out
    release.resolve();
    expect(apiTokenUsable(await asked)).toBe(true); // as read, for the request made before the revocation
    store.getApiTokenByHash = read;
    expect(apiTokenUsable(await cache.byHash("h2"))).toBe(false); // not kept: read again, revoked
  } finally {
    await store.close();
  }
});
