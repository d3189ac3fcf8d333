import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDockerd, type DockerdHandle } from "../../test/harness/dockerd.ts";
import { Runtime } from "./runtime.ts";

let dockerd: DockerdHandle;
let root: string;

beforeAll(async () => {
  dockerd = await startDockerd();
  root = mkdtempSync(join(tmpdir(), "runtime-facts-"));
}, 90_000);

afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  await dockerd?.stop();
});

const IMAGE = `example.test/facts/app@sha256:${"a".repeat(64)}`;

/** An app dir as an install leaves it: the compose file and `.fioup/app.json`, two services. */
function writeApp(dir: string, uri: string, compose: string): void {
  mkdirSync(join(dir, ".fioup"), { recursive: true });
  writeFileSync(join(dir, "docker-compose.yml"), compose);
  const images = ["main", "debug"].map((service) => ({ service, ref: IMAGE, tag: "example.test/facts/app:fioup-x", imageId: `sha256:${"b".repeat(64)}` }));
  writeFileSync(join(dir, ".fioup/app.json"), JSON.stringify({ name: "facts", uri, composeFile: "docker-compose.yml", images }));
}

test("app states parse each installed compose file once; an app installed again with another compose file is parsed again", async () => {
  const apps = join(root, "apps");
  const rt = new Runtime({ composeAppsRoot: apps, storeRoot: join(root, "store"), dockerHost: dockerd.host });
  writeApp(join(apps, "facts"), `example.test/main/facts@sha256:${"1".repeat(64)}`, `services:\n  main:\n    image: ${IMAGE}\n  debug:\n    image: ${IMAGE}\n`);
  const first = await rt.appsState();
  expect(first.facts!.services.map((s) => s.name).sort()).toEqual(["debug", "main"]);
  expect(rt.composeParses).toBe(1);
  // The daemon reports every poll: the facts come from the first parse.
  expect(await rt.appsState()).toEqual(first);
  expect(rt.composeParses).toBe(1);

  // A new version swapped in whose compose file puts "debug" behind a profile (compose up does not start it).
  writeApp(join(apps, ".facts.staged"), `example.test/main/facts@sha256:${"2".repeat(64)}`, `services:\n  main:\n    image: ${IMAGE}\n  debug:\n    image: ${IMAGE}\n    profiles: [debug]\n`);
  expect(await rt.swapApp("facts")).toBe(true);
  const after = await rt.appsState();
  expect(rt.composeParses).toBe(2);
  expect(after.facts!.services.map((s) => s.name)).toEqual(["main"]);
  await rt.appsState();
  expect(rt.composeParses).toBe(2);
}, 60_000);

test("the services of an app's state are those compose starts: a profile its .env enables counts, read again when the .env changes", async () => {
  const apps = join(root, "apps-env");
  const rt = new Runtime({ composeAppsRoot: apps, storeRoot: join(root, "store"), dockerHost: dockerd.host });
  const dir = join(apps, "facts");
  writeApp(dir, `example.test/main/facts@sha256:${"3".repeat(64)}`, `services:\n  main:\n    image: ${IMAGE}\n  debug:\n    image: ${IMAGE}\n    profiles: [debug]\n`);
  writeFileSync(join(dir, ".env"), "COMPOSE_PROFILES=debug\n");
  expect((await rt.appsState()).facts!.services.map((s) => s.name).sort()).toEqual(["debug", "main"]);
  expect(rt.composeParses).toBe(1);
  writeFileSync(join(dir, ".env"), "COMPOSE_PROFILES=metrics\n");
  expect((await rt.appsState()).facts!.services.map((s) => s.name)).toEqual(["main"]);
  expect(rt.composeParses).toBe(2);
  rmSync(join(dir, ".env"));
  expect((await rt.appsState()).facts!.services.map((s) => s.name)).toEqual(["main"]);
  expect(rt.composeParses).toBe(3);
}, 60_000);

test("a compose v2 binary installed as docker-compose reads the app's .env as v2 does (`*` enables every profile); v1 does not", async () => {
  const bin = mkdtempSync(join(tmpdir(), "runtime-v2-"));
  try {
    // Debian bookworm ships no compose v2: one that answers `version` as v2 does, word for word.
    const v2 = join(bin, "docker-compose");
    writeFileSync(v2, `#!/bin/sh\n[ "$1" = version ] && echo "Docker Compose version v2.24.6"\n`, { mode: 0o755 });
    const services = async (composeCommand: string[]) => {
      const apps = join(root, `apps-major-${composeCommand.length}-${Math.random().toString(36).slice(2)}`);
      const rt = new Runtime({ composeAppsRoot: apps, storeRoot: join(root, "store"), dockerHost: dockerd.host, composeCommand });
      const dir = join(apps, "facts");
      writeApp(dir, `example.test/main/facts@sha256:${"4".repeat(64)}`, `services:\n  main:\n    image: ${IMAGE}\n  debug:\n    image: ${IMAGE}\n    profiles: [debug]\n`);
      writeFileSync(join(dir, ".env"), "COMPOSE_PROFILES=*\n");
      return (await rt.appsState()).facts!.services.map((s) => s.name).sort();
    };
    expect(await services([v2])).toEqual(["debug", "main"]);
    const v1 = Bun.which("docker-compose");
    if (v1 && Bun.spawnSync([v1, "version"]).stdout.toString().startsWith("docker-compose version 1.")) expect(await services([v1])).toEqual(["main"]);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
}, 60_000);
