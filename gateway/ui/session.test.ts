import { describe, expect, test } from "bun:test";
import type { Gateway } from "../env.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { csrfToken, csrfValid, openSession, sealSession, SESSION_SECONDS } from "./session.ts";

/** Only the store is used by the session code (the key's secret lives in the database). */
const gateway = () => ({ store: SqliteStore.open(":memory:") }) as unknown as Gateway;

describe("dashboard session cookie", () => {
  test("opens to the token it sealed, which it does not show in clear", async () => {
    const gw = gateway();
    const { value } = await sealSession(gw, "secret-token-123", "viewer");
    expect(value).not.toContain("secret-token-123");
    expect(await openSession(gw, value)).toMatchObject({ token: "secret-token-123", role: "viewer" });
  });

  test("another replica sharing the database opens it (the key's secret lives in the database)", async () => {
    const store = SqliteStore.open(":memory:");
    const [a, b] = [{ store }, { store }] as unknown as Gateway[];
    const { value } = await sealSession(a!, "shared", "admin");
    expect((await openSession(b!, value))?.token).toBe("shared");
  });

  test("refuses a tampered, expired or foreign cookie", async () => {
    const gw = gateway();
    const now = Date.now();
    const { value } = await sealSession(gw, "t", "admin", now);
    const flipped = value.slice(0, 10) + (value[10] === "A" ? "B" : "A") + value.slice(11);
    expect(await openSession(gw, flipped)).toBeUndefined();
    expect(await openSession(gw, `${value}x`)).toBeUndefined();
    expect(await openSession(gw, value, now + SESSION_SECONDS * 1000 + 1)).toBeUndefined();
    // Another database, another key: a cookie from elsewhere opens nothing.
    expect(await openSession(gateway(), value)).toBeUndefined();
  });

  test("a CSRF token is valid only for the session it was made for", async () => {
    const gw = gateway();
    const a = (await sealSession(gw, "t", "admin")).session;
    const b = (await sealSession(gw, "t", "admin")).session;
    const token = await csrfToken(gw, a);
    expect(await csrfValid(gw, a, token)).toBe(true);
    expect(await csrfValid(gw, b, token)).toBe(false);
    expect(await csrfValid(gw, a, undefined)).toBe(false);
  });
});
