import { describe, expect, test } from "bun:test";
import { Tag } from "../api/target.ts";
import { UsageError } from "./command.ts";
import { checkFlagValues, checkGatewayUrl, durationFlag } from "./flag-values.ts";

test("the first value the schema refuses is bad usage, naming the flag, the rule and the value", () => {
  expect(() => checkFlagValues("--tag", Tag, ["main", "beta"])).not.toThrow();
  expect(() => checkFlagValues("--tag", Tag, [])).not.toThrow();
  const err = (() => {
    try {
      checkFlagValues("--tag", Tag, ["main", "eu/west", "a b"]);
    } catch (e) {
      return e;
    }
  })();
  expect(err).toBeInstanceOf(UsageError);
  expect((err as Error).message).toBe('--tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"');
});

describe("checkGatewayUrl", () => {
  test("takes https:// with a port and a path (a gateway behind a proxy), refuses the rest naming the flag", () => {
    expect(checkGatewayUrl("--server", "https://gw.example.com/ota").pathname).toBe("/ota");
    expect(checkGatewayUrl("--server", "https://127.0.0.1:8443").host).toBe("127.0.0.1:8443");
    expect(() => checkGatewayUrl("--server", "http://127.0.0.1:8443/ota")).toThrow("--server http://127.0.0.1:8443/ota: the gateway speaks HTTPS only: use https://127.0.0.1:8443/ota");
    for (const bad of ["notaurl", "gateway:8443", "https://", "ftp://gw"]) expect(() => checkGatewayUrl("--server", bad)).toThrow(`--server ${bad}: expected https://HOST[:PORT]`);
  });

  test("refuses a query, a fragment or a user:password (they ended up in every request path, or in every message)", () => {
    expect(() => checkGatewayUrl("--server", "https://127.0.0.1:8443?x=1")).toThrow("--server https://127.0.0.1:8443?x=1: a gateway URL has no query (?) or fragment (#): use https://127.0.0.1:8443");
    expect(() => checkGatewayUrl("--server", "https://gw/ota#top")).toThrow("--server https://gw/ota#top: a gateway URL has no query (?) or fragment (#): use https://gw/ota");
    expect(() => checkGatewayUrl("--server", "https://admin:s3cret@gw:8443")).toThrow(new UsageError("--server: a gateway URL holds no user or password (the token is --token): use https://gw:8443"));
  });
});

describe("durationFlag", () => {
  test("a number a person types needs its unit: 30 is neither read as 30 s nor as 30 days", () => {
    expect(durationFlag("--expires", "30d")).toBe(30 * 86400);
    expect(durationFlag("--soak", "90m")).toBe(5400);
    expect(() => durationFlag("--expires", "30")).toThrow(new UsageError('--expires: Invalid duration "30": give its unit: 30s, 30m, 30h, 30d or 30w'));
    expect(() => durationFlag("--expires", "0")).toThrow(new UsageError('--expires: Invalid duration "0": must be more than 0'));
    expect(durationFlag("--grace", "0", { allowZero: true })).toBe(0); // no grace: 0 is 0 in any unit
  });
});
