/**
 * What publish takes from a containers checkout is what the commit holds, as CI would see it:
 * files git ignores (a developer's `.env`) are neither bundled nor read for variables, and
 * publish says which it left out; an env_file must be a file of the app's bundle; `extends`
 * is refused. Through the CLI, as CI runs it, with third-party images only (no docker build).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { discover, gitIgnoredNote } from "../../gateway/publish/discover.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { fetchApp, gatewayRegistry } from "./_inspect.ts";
import { containersRepo, git, pushUpstreamNginx } from "./_setup.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway()]);
  await pushUpstreamNginx(upstream);
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
}, 180_000);

async function publishCli(repo: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(
    [process.execPath, GATEWAY_MAIN, "publish", "--containers", repo, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--mirror", `docker.io=${upstream.host}`, "--insecure-registry", upstream.host, "--format", "json", ...args],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, GATEWAY_TOKEN: "", DB_PASSWORD: undefined } },
  );
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

const ENVAPP = "services:\n  db:\n    image: nginx:alpine\n    environment:\n      PASS: ${DB_PASSWORD:-unset}\n";

describe("gateway publish and git-ignored files", () => {
  test("an ignored .env and other ignored files are not bundled, not read for variables, and said; the tree is clean", async () => {
    const repo = await containersRepo({
      ".gitignore": ".env\n*.secret\nlocal/\n",
      "envapp/docker-compose.yml": ENVAPP,
      "envapp/app.conf": "listen 80\n",
    });
    await writeFile(join(repo, "envapp", ".env"), "DB_PASSWORD=hunter2-from-laptop\n");
    await writeFile(join(repo, "envapp", "db.secret"), "key\n");
    await Bun.write(join(repo, "envapp", "local", "notes.txt"), "mine\n");
    expect(await git(repo, "status", "--porcelain")).toBe("");
    const r = await publishCli(repo);
    expect(r.stderr).toContain("app envapp: left out 3 paths git ignores, which the commit does not hold: .env, db.secret, local/ (.env is not read for variables either)");
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain("uncommitted changes");
    const out = JSON.parse(r.stdout);
    expect(out.commit).toBe(await git(repo, "rev-parse", "HEAD"));
    expect(out.apps[0].files).toEqual(["app.conf", "docker-compose.yml"]);
    const app = await fetchApp(gatewayRegistry(gw), out.apps[0].uri);
    expect(app.entries).toEqual(["app.conf", "docker-compose.yml"]);
    expect(app.compose.services.db.environment).toEqual({ PASS: "unset" });
    expect(app.files["docker-compose.yml"]).not.toContain("hunter2");
  });

  test("an untracked file git does not ignore is still published, with the dirty warning", async () => {
    const repo = await containersRepo({ ".gitignore": ".env\n", "envapp/docker-compose.yml": ENVAPP });
    await writeFile(join(repo, "envapp", "extra.conf"), "x\n");
    const r = await publishCli(repo, "--dry-run");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("has uncommitted changes");
    expect(r.stderr).not.toContain("git ignores");
    expect(JSON.parse(r.stdout).apps[0].files).toEqual(["docker-compose.yml", "extra.conf"]);
  });

  test("a tracked .env is read and bundled as before, even when a rule would ignore it", async () => {
    const repo = await containersRepo({ "envapp/docker-compose.yml": ENVAPP, "envapp/.env": "DB_PASSWORD=from-the-commit\n" });
    await writeFile(join(repo, ".gitignore"), ".env\n");
    await git(repo, "add", ".gitignore");
    await git(repo, "commit", "-q", "-m", "ignore .env from now on");
    const r = await publishCli(repo);
    expect(r.code).toBe(0);
    const app = await fetchApp(gatewayRegistry(gw), JSON.parse(r.stdout).apps[0].uri);
    expect(app.entries).toContain(".env");
    expect(app.compose.services.db.environment).toEqual({ PASS: "from-the-commit" });
  });

  test("an app whose compose file git ignores is no app", async () => {
    const repo = await containersRepo({ ".gitignore": "scratch/\nweb/compose.yaml\n", "envapp/docker-compose.yml": ENVAPP, "web/README.md": "x\n" });
    await Bun.write(join(repo, "scratch", "compose.yaml"), ENVAPP);
    await Bun.write(join(repo, "web", "compose.yaml"), ENVAPP);
    const r = await publishCli(repo, "--dry-run");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).apps.map((a: { name: string }) => a.name)).toEqual(["envapp"]);
  });
});

describe("discover and git-ignored files", () => {
  test("each app lists what git ignores in its folder; the note shows the first five and how many more", async () => {
    const repo = await containersRepo({ ".gitignore": "*.log\n", "envapp/docker-compose.yml": ENVAPP, "web/compose.yaml": ENVAPP, "envapp/app.conf": "x\n" });
    for (let i = 1; i <= 7; i++) await writeFile(join(repo, "envapp", `${i}.log`), "x\n");
    const { apps } = await discover(repo);
    expect(apps.map((a) => [a.name, a.gitIgnored, a.files])).toEqual([
      ["envapp", ["1.log", "2.log", "3.log", "4.log", "5.log", "6.log", "7.log"], [{ name: "app.conf", size: 2 }]],
      ["web", [], []],
    ]);
    expect(gitIgnoredNote(apps[0]!)).toBe("app envapp: left out 7 paths git ignores, which the commit does not hold: 1.log, 2.log, 3.log, 4.log, 5.log and 2 more");
    expect(gitIgnoredNote(apps[1]!)).toBeUndefined();
  });
});

describe("gateway publish and env_file, extends", () => {
  const withEnvFile = (envFile: string) => `services:\n  db:\n    image: nginx:alpine\n    env_file: ${envFile}\n`;

  test("an env_file outside the app folder is refused (exit 10), naming env_file and the path", async () => {
    const repo = await containersRepo({ "common.env": "A=1\n", "envapp/docker-compose.yml": withEnvFile("../common.env") });
    const r = await publishCli(repo, "--dry-run");
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('Invalid compose file envapp/docker-compose.yml, service "db": env_file ../common.env is outside the app folder envapp');
  });

  test("an env_file in the app folder is bundled; one git ignores is refused (exit 10), as the bundle would lack it", async () => {
    const repo = await containersRepo({ ".gitignore": "local.env\n", "envapp/docker-compose.yml": withEnvFile("[conf/app.env]"), "envapp/conf/app.env": "A=1\n" });
    const ok = await publishCli(repo, "--dry-run");
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).apps[0].files).toEqual(["conf/app.env", "docker-compose.yml"]);
    await writeFile(join(repo, "envapp", "local.env"), "A=2\n");
    await writeFile(join(repo, "envapp", "docker-compose.yml"), withEnvFile("local.env"));
    const ignored = await publishCli(repo, "--dry-run");
    expect(ignored.code).toBe(10);
    expect(ignored.stderr).toContain("env_file local.env is not in the app's bundle: git ignores it, so the commit does not hold it");
  });

  test("a relative bind mount outside the app folder is refused (exit 10), short or long form; inside it, absolute or named, it is published", async () => {
    const withVolumes = (volumes: string) => `services:\n  db:\n    image: nginx:alpine\n    volumes:\n${volumes}`;
    const repo = await containersRepo({ "common/site.conf": "x\n", "envapp/docker-compose.yml": withVolumes("      - ../common:/etc/common:ro\n") });
    const short = await publishCli(repo, "--dry-run");
    expect(short.code).toBe(10);
    expect(short.stderr).toContain('Invalid compose file envapp/docker-compose.yml, service "db": the bind mount ../common is outside the app folder envapp');
    await writeFile(join(repo, "envapp", "docker-compose.yml"), withVolumes("      - type: bind\n        source: ./conf/../../common\n        target: /etc/common\n"));
    const long = await publishCli(repo, "--dry-run");
    expect(long.code).toBe(10);
    expect(long.stderr).toContain("the bind mount ./conf/../../common is outside the app folder envapp");
    // A named volume the top level binds to a relative folder: compose resolves it the same way.
    await writeFile(join(repo, "envapp", "docker-compose.yml"), withVolumes("      - common:/etc/common\n") + "volumes:\n  common:\n    driver: local\n    driver_opts: {type: none, o: bind, device: ../common}\n");
    const named = await publishCli(repo, "--dry-run");
    expect(named.code).toBe(10);
    expect(named.stderr).toContain('Invalid compose file envapp/docker-compose.yml, service "db": the bind mount ../common is outside the app folder envapp');
    await writeFile(
      join(repo, "envapp", "docker-compose.yml"),
      withVolumes("      - ./data:/data\n      - /var/run/docker.sock:/var/run/docker.sock\n      - cache:/cache\n      - type: bind\n        source: conf\n        target: /conf\n") + "volumes:\n  cache: {}\n",
    );
    const ok = await publishCli(repo, "--dry-run");
    expect(ok.stderr).not.toContain("bind mount");
    expect(ok.code).toBe(0);
  });

  test("a config's or secret's file outside the app folder is refused (exit 10); inside it or absolute, it is published", async () => {
    const withConfig = (file: string) =>
      `services:\n  db:\n    image: nginx:alpine\n    configs: [site]\n    secrets: [{source: token, target: token}]\nconfigs:\n  site: {file: ${file}}\nsecrets:\n  token: {file: ./token.txt}\n`;
    const repo = await containersRepo({ "common/site.conf": "x\n", "envapp/token.txt": "t\n", "envapp/docker-compose.yml": withConfig("../common/site.conf") });
    const out = await publishCli(repo, "--dry-run");
    expect(out.code).toBe(10);
    expect(out.stderr).toContain('Invalid compose file envapp/docker-compose.yml, service "db": the config site\'s file ../common/site.conf is outside the app folder envapp');
    await writeFile(join(repo, "envapp", "docker-compose.yml"), withConfig("/etc/site.conf"));
    const ok = await publishCli(repo, "--dry-run");
    expect(ok.stderr).not.toContain("outside the app folder");
    expect(ok.code).toBe(0);
  });

  test("a service with extends is refused (exit 10), saying extends is not supported and to write the service out", async () => {
    const repo = await containersRepo({ "envapp/docker-compose.yml": "services:\n  base:\n    image: nginx:alpine\n  ext:\n    extends:\n      service: base\n" });
    const r = await publishCli(repo, "--dry-run");
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('service "ext": extends is not supported');
    expect(r.stderr).toContain("write the service out in full");
    // With an image of its own too: what it would inherit is still unseen.
    const withImage = await containersRepo({ "envapp/docker-compose.yml": "services:\n  base:\n    image: nginx:alpine\n    restart: always\n  ext:\n    image: nginx:alpine\n    extends: base\n" });
    const r2 = await publishCli(withImage, "--dry-run");
    expect(r2.code).toBe(10);
    expect(r2.stderr).toContain('service "ext": extends is not supported');
  });
});
