import { expect, test } from "bun:test";
import { shownUrl, urlWithoutPassword } from "./shown-url.ts";

test("a password in a URL is masked, the rest kept as written", () => {
  expect(shownUrl("mqtt://dev:secret@127.0.0.1:1883")).toBe("mqtt://dev:***@127.0.0.1:1883");
  expect(shownUrl("postgres://ota:p%40ss@db.example:5432/ota?sslmode=require")).toBe("postgres://ota:***@db.example:5432/ota?sslmode=require");
  expect(shownUrl("mqtts://user:a@b@host")).toBe("mqtts://user:***@host");
  expect(shownUrl("mqtt://dev@host")).toBe("mqtt://dev@host");
  expect(shownUrl("/var/lib/gateway/db.sqlite")).toBe("/var/lib/gateway/db.sqlite");
});

test("a command line to copy gets the URL without its password, so the client reads it from its own place", () => {
  expect(urlWithoutPassword("postgres://ota:p%40ss@db.example:5432/ota?sslmode=require")).toBe("postgres://ota@db.example:5432/ota?sslmode=require");
  expect(urlWithoutPassword("postgres://ota@db/ota")).toBe("postgres://ota@db/ota");
  expect(urlWithoutPassword("postgres://db/ota")).toBe("postgres://db/ota");
});
