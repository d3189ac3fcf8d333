/**
 * preload's TUF client asks the gateway under the server's own path: a gateway behind a proxy at
 * https://host/ota is asked for https://host/ota/repo/..., never https://host/repo/.... The
 * "gateway" here is a plain loopback server that records the paths asked and serves a small
 * signed repository under /ota/repo/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Root } from "@tufjs/models";
import { generateKey, modelKey } from "../../lib/tuf/keys.ts";
import { expiresAt, signJson, signMetadata } from "../../lib/tuf/metadata.ts";
import { targetsFromGateway } from "../../preload/targets.ts";

const PREFIX = "/ota";
let server: ReturnType<typeof Bun.serve>;
const asked: string[] = [];

beforeAll(() => {
  const key = generateKey();
  const expires = expiresAt(new Date(), 86400);
  const root = new Root({ version: 1, specVersion: "1.0.31", expires, consistentSnapshot: true });
  for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
  const custom = { version: "1", hardwareIds: ["x86_64-linux"], tags: ["main"], docker_compose_apps: {} };
  const target = { length: 0, hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }, custom };
  const files: Record<string, string | Uint8Array> = {
    "1.root.json": signMetadata(root, [key]),
    "timestamp.json": signJson({ _type: "timestamp", spec_version: "1.0.31", version: 1, expires, meta: { "snapshot.json": { version: 1 } } }, [key]),
    "1.snapshot.json": signJson({ _type: "snapshot", spec_version: "1.0.31", version: 1, expires, meta: { "targets.json": { version: 1 } } }, [key]),
    "1.targets.json": signJson({ _type: "targets", spec_version: "1.0.31", version: 1, expires, targets: { "x86_64-linux-1": target } }, [key]),
  };
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      const path = new URL(req.url).pathname;
      asked.push(path);
      const body = path.startsWith(`${PREFIX}/repo/`) ? files[path.slice(`${PREFIX}/repo/`.length)] : undefined;
      return body === undefined ? new Response("not found", { status: 404 }) : new Response(body);
    },
  });
});
afterAll(() => server?.stop(true));

test("targetsFromGateway asks for root.json and the TUF metadata under the server's path prefix", async () => {
  for (const slash of ["", "/"]) {
    asked.length = 0;
    const base = `http://127.0.0.1:${server.port}${PREFIX}${slash}`;
    const set = await targetsFromGateway(base, "token", "");
    expect(Object.keys(set.targets)).toEqual(["x86_64-linux-1"]);
    expect(set.source).toBe(`http://127.0.0.1:${server.port}${PREFIX}/repo/`);
    expect(asked).toContain(`${PREFIX}/repo/1.root.json`);
    expect(asked).toContain(`${PREFIX}/repo/timestamp.json`);
    expect(asked.filter((p) => !p.startsWith(`${PREFIX}/repo/`))).toEqual([]);
  }
});
