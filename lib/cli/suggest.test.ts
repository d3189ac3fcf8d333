import { expect, test } from "bun:test";
import { closest } from "./suggest.ts";

test("suggests the one name a typo is close to", () => {
  expect(closest("sevrer", ["server", "token", "force"])).toBe("server");
  expect(closest("statsu", ["status", "start", "check"])).toBe("status");
  expect(closest("datta", ["data", "db", "listen"])).toBe("data");
  expect(closest("interval", ["poll-interval", "once"])).toBe("poll-interval");
});

test("suggests nothing when no name is close, or two are equally close", () => {
  expect(closest("x", ["server", "token"])).toBeUndefined();
  expect(closest("frobnicate", ["server", "token"])).toBeUndefined();
  expect(closest("tar", ["tag", "tap"])).toBeUndefined();
  expect(closest("devise", ["devices", "devices", "targets"])).toBe("devices"); // one name, listed twice
});
