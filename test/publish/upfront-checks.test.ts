/**
 * What publish learns from the gateway before it builds anything: with the TUF targets key offline
 * (moved out of DIR/tuf/keys/, docs/keys.md "Targets signed offline") the gateway would refuse the
 * targets, publish's last call, so publish and --dry-run refuse up front (whoami's canSignTargets),
 * naming the fix, and nothing is built or pushed; with the key back the same publish works. And
 * what a target says of the work tree it came from: one published with uncommitted changes is
 * marked so (custom containersDirty), in publish's --format json and in `gateway targets list`.
 * Through the CLI, as CI runs it, with a publish token, a real gateway and a real dockerd building
 * the image.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, renameSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RegistryError } from "../../lib/oci/registry-client.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { gatewayRegistry, signedTargets } from "./_inspect.ts";
import { containersRepo, git, loadBaseImage } from "./_setup.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let dockerd: DockerdHandle;
let gw: GatewayHandle;
let publishToken: string;

const keyFile = () => join(gw.dataDir, "tuf", "keys", "targets.json");
const aside = () => join(gw.dataDir, "targets.json.offline");
/** docs/keys.md: the targets key file moved out of the keys dir, and back. */
const keyOut = () => renameSync(keyFile(), aside());
const keyBack = () => renameSync(aside(), keyFile());

/** An image built here (a top-level Dockerfile) and an app that uses it. */
const REPO = {
  "api/Dockerfile": "FROM fixtures/busybox:latest\nCOPY ./hello.txt /hello.txt\n",
  "api/hello.txt": "hello\n",
  "web/docker-compose.yml": "services:\n  api:\n    image: api\n",
};

beforeAll(async () => {
  [dockerd, gw] = await Promise.all([startDockerd(), startGateway()]);
  await loadBaseImage(dockerd);
  const made = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "publish", name: "ci" }) });
  publishToken = ((await made.json()) as { token: string }).token;
}, 180_000);

afterAll(async () => {
  if (gw && existsSync(aside())) keyBack();
  await Promise.all([gw?.stop(), dockerd?.stop()]);
}, 180_000);

async function publishCli(repo: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(
    [process.execPath, GATEWAY_MAIN, "publish", "--containers", repo, "--ref", "refs/heads/master", "--server", gw.url, "--token", publishToken, "--format", "json", ...args],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...dockerd.env, GATEWAY_TOKEN: "" } },
  );
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** `gateway targets list` as an operator runs it, with the publish token. */
async function targetsList(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([process.execPath, GATEWAY_MAIN, "targets", "list", "--server", gw.url, "--token", publishToken, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, GATEWAY_TOKEN: "" },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** The tags of `repo` in the gateway's registry ([] when it has no such repository). */
async function pushedTags(repo: string): Promise<string[]> {
  return gatewayRegistry(gw)
    .listTags(repo)
    .catch((e: unknown) => {
      if (e instanceof RegistryError && e.status === 404) return [];
      throw e;
    });
}

/** Images the engine holds that publish built for this gateway's `<factory>/api`. */
async function builtImages(): Promise<string> {
  return (await dockerd.docker("image", "ls", "-q", "--filter", `reference=${gw.host}/main/api`)).trim();
}

describe("gateway publish with the targets key offline", () => {
  test("publish and --dry-run refuse before building anything, saying to bring the targets key back; back, the same publish works", async () => {
    const repo = await containersRepo(REPO);
    const before = await signedTargets(gw);
    keyOut();
    try {
      for (const args of [["--dry-run"], []]) {
        const r = await publishCli(repo, ...args);
        // With --format json the error is stdout's one document.
        expect({ args, code: r.code, out: JSON.parse(r.stdout) }).toEqual({
          args,
          code: 3,
          out: {
            code: "AdminApiError",
            exitCode: 3,
            error: expect.stringContaining("cannot sign targets now: its TUF targets key is offline"),
          },
        });
        expect(r.stdout).toContain("Bring the targets key file back into the gateway's tuf/keys/");
        expect(r.stderr).not.toContain("docker build");
      }
      // Nothing built in the engine, nothing pushed, no target added.
      expect(await builtImages()).toBe("");
      expect({ api: await pushedTags("main/api"), web: await pushedTags("main/web") }).toEqual({ api: [], web: [] });
      expect((await signedTargets(gw)).version).toBe(before.version);
    } finally {
      keyBack();
    }
    const r = await publishCli(repo);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining("image api: docker build") });
    const out = JSON.parse(r.stdout);
    const sha = await git(repo, "rev-parse", "HEAD");
    expect(Object.keys((await signedTargets(gw)).targets)).toEqual(Object.keys(out.targets));
    expect(await pushedTags("main/api")).toContain(sha.slice(0, 7));
  }, 180_000);
});

describe("gateway publish from a work tree with uncommitted changes", () => {
  test("its target is marked dirty (custom containersDirty), in --format json and in targets list; a clean publish's is not", async () => {
    const repo = await containersRepo(REPO);
    const sha = await git(repo, "rev-parse", "HEAD");
    const clean = await publishCli(repo);
    expect(clean.code).toBe(0);
    await writeFile(join(repo, "api", "hello.txt"), "changed, not committed\n");
    const dirty = await publishCli(repo);
    expect({ code: dirty.code, stderr: dirty.stderr }).toEqual({ code: 0, stderr: expect.stringContaining("has uncommitted changes") });

    const [c, d] = [JSON.parse(clean.stdout), JSON.parse(dirty.stdout)];
    const [cleanName, dirtyName] = [Object.keys(c.targets)[0]!, Object.keys(d.targets)[0]!];
    // --format json: the commit, and whether the content is that commit's.
    expect({ commit: c.commit, dirty: c.dirty, custom: c.targets[cleanName].custom }).toEqual({
      commit: sha,
      dirty: undefined,
      custom: expect.not.objectContaining({ containersDirty: expect.anything() }),
    });
    expect({ commit: d.commit, dirty: d.dirty, sha: d.targets[dirtyName].custom["containers-sha"], marked: d.targets[dirtyName].custom.containersDirty }).toEqual({
      commit: sha,
      dirty: true,
      sha,
      marked: true,
    });

    // What the gateway signed, as targets list shows it: JSON and the table.
    const json = await targetsList("--format", "json");
    expect(json.code).toBe(0);
    const signed = JSON.parse(json.stdout).targets;
    expect({ clean: signed[cleanName].custom.containersDirty, dirty: signed[dirtyName].custom.containersDirty }).toEqual({ clean: undefined, dirty: true });
    const table = await targetsList();
    expect(table.code).toBe(0);
    const row = (name: string) => table.stdout.split("\n").find((l) => l.startsWith(`${name} `)) ?? `(no row for ${name})`;
    expect(table.stdout.split("\n")[1]).toContain("COMMIT");
    expect(row(dirtyName)).toContain(` ${sha.slice(0, 12)}-dirty `);
    expect(row(cleanName)).toContain(` ${sha.slice(0, 12)} `);
    expect(row(cleanName)).not.toContain("-dirty");
  }, 180_000);
});
