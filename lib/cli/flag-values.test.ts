import { describe, expect, test } from "bun:test";
import { Tag } from "../api/target.ts";
import { UsageError } from "./command.ts";
import { checkFlagValues, checkGatewayUrl } from "./flag-values.ts";

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
