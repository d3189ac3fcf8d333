import { describe, expect, test } from "bun:test";
import { parse } from "yaml";
import { parseCompose } from "./compose-file.ts";
import { pinCompose, UnpinnedImageError } from "./pin.ts";

const D = "sha256:" + "ab".repeat(32);

describe("pinCompose", () => {
  test("rewrites every image, drops build and keeps comments and other keys", async () => {
    const src = [
      "# the app",
      'version: "3"',
      "services:",
      "  app:",
      "    build: . # built by CI",
      "    image: hub.foundries.io/main/simple-app:latest",
      "    environment:",
      '      FROM_COMPOSE: "this came from docker-compose.yml"',
      "  web:",
      "    image: nginx:alpine  # third party",
      "    ports:",
      "      - 80:80",
      "",
    ].join("\n");
    const pinned = await pinCompose(parseCompose(src, "a.yml"), async (s) => `127.0.0.1:5000/main/${s.name}@${D}`);
    expect(pinned.text).toContain("# the app");
    expect(pinned.text).toContain("# third party");
    const doc = parse(pinned.text);
    expect(doc.services.app).toEqual({
      image: `127.0.0.1:5000/main/app@${D}`,
      environment: { FROM_COMPOSE: "this came from docker-compose.yml" },
    });
    expect(doc.services.web.image).toBe(`127.0.0.1:5000/main/web@${D}`);
    expect(doc.services.web.ports).toEqual(["80:80"]);
    expect(doc.version).toBe("3");
    expect(pinned.pins.web).toEqual({ from: "nginx:alpine", to: `127.0.0.1:5000/main/web@${D}` });
  });

  test("refuses a resolver answer that is not digest-pinned", async () => {
    const c = parseCompose("services:\n  a:\n    image: x\n", "a.yml");
    await expect(pinCompose(c, async () => "registry/x:latest")).rejects.toThrow(UnpinnedImageError);
  });

  test("propagates resolver errors", async () => {
    const c = parseCompose("services:\n  a:\n    image: x\n", "a.yml");
    await expect(pinCompose(c, async () => { throw new Error("nope"); })).rejects.toThrow("nope");
  });
});

describe("pinCompose with merge keys", () => {
  test("an explicit pinned image overrides the merged one", async () => {
    const src = "x-base: &base\n  image: nginx:alpine\n  restart: always\nservices:\n  a:\n    <<: *base\n";
    const pinned = await pinCompose(parseCompose(src, "m.yml"), async () => `r:1/main/nginx@${D}`);
    const again = parseCompose(pinned.text, "m.yml");
    expect(again.services[0]!.image).toBe(`r:1/main/nginx@${D}`);
    expect(parse(pinned.text, { merge: true }).services.a.restart).toBe("always");
  });

  test("a build that comes through a merge key is dropped too: the service is written out in full", async () => {
    const src = [
      "x-common: &common",
      "  build: ../api",
      "  restart: always",
      "services:",
      "  api:",
      "    <<: *common",
      "    environment:",
      "      A: b",
      "  own:",
      "    <<: [*common]",
      "    build: ./own # its own build over the merged one",
      "  web:",
      "    image: nginx:alpine # third party",
      "",
    ].join("\n");
    const pinned = await pinCompose(parseCompose(src, "m.yml"), async (s) => `r:1/main/${s.name}@${D}`);
    const doc = parse(pinned.text, { merge: true });
    expect(doc.services.api).toEqual({ image: `r:1/main/api@${D}`, restart: "always", environment: { A: "b" } });
    expect(doc.services.own).toEqual({ image: `r:1/main/own@${D}`, restart: "always" });
    expect(pinned.text).toContain("# third party");
    for (const s of parseCompose(pinned.text, "m.yml").services) expect(s.build).toBe(false);
  });

  test("drops pull_policy, written in the service or taken through <<, and says so in a note per service", async () => {
    const src = [
      "x-common: &common",
      "  pull_policy: weekly",
      "  restart: always",
      "services:",
      "  api:",
      "    image: api",
      "    pull_policy: always",
      "  worker:",
      "    <<: *common",
      "    image: api",
      "  web:",
      "    image: nginx:alpine",
      "",
    ].join("\n");
    const pinned = await pinCompose(parseCompose(src, "app/docker-compose.yml"), async (s) => `r:1/main/${s.name}@${D}`);
    const doc = parse(pinned.text, { merge: true });
    expect(doc.services.api).toEqual({ image: `r:1/main/api@${D}` });
    expect(doc.services.worker).toEqual({ image: `r:1/main/worker@${D}`, restart: "always" });
    expect(pinned.notes).toEqual([
      expect.stringContaining('app/docker-compose.yml, service "api": dropped pull_policy: always'),
      expect.stringContaining('app/docker-compose.yml, service "worker": dropped pull_policy: weekly'),
    ]);
  });
});
