/**
 * `gateway publish` as CI runs it: a child process, flags, `--format json` on stdout, progress on
 * stderr, exit codes. Uses an app of third-party images only, so no docker build is needed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/tmp.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { signedTargets } from "./_inspect.ts";
import { containersRepo, git, pushUpstreamNginx } from "./_setup.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let repo: string;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway({ args: ["--factory", "acme"] })]);
  await pushUpstreamNginx(upstream);
  repo = await containersRepo({
    "httpd/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine # pinned at publish\n",
    "httpd/nginx.conf": "server {}\n",
  });
  await git(repo, "branch", "main");
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
}, 180_000);

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([process.execPath, GATEWAY_MAIN, "publish", ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GATEWAY_TOKEN: "" } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

const common = () => ["--containers", repo, "--ref", "refs/heads/main", "--server", gw.url, "--token", gw.adminToken, "--mirror", `docker.io=${upstream.host}`, "--insecure-registry", upstream.host];

describe("gateway publish CLI", () => {
  test("--format json prints the result on stdout and progress on stderr", async () => {
    const r = await cli(...common(), "--format", "json", "--platform", "linux/arm64");
    expect(r.stderr).toContain("targets: added arm64-linux-");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.apps.map((a: { name: string }) => a.name)).toEqual(["httpd"]);
    expect(out.tags).toEqual(["main"]);
    expect(out.hardwareIds).toEqual(["arm64-linux"]);
    // The factory comes from the gateway's CA: repositories are acme/..., which devices may pull.
    expect(out.factory).toBe("acme");
    expect(out.apps[0].uri.startsWith(`${gw.host}/acme/httpd@sha256:`)).toBe(true);
    const { targets } = await signedTargets(gw);
    expect(targets[`arm64-linux-${out.version}`]!.custom.docker_compose_apps.httpd!.uri).toBe(out.apps[0].uri);
  });

  test("the text report lists apps, pinned images and targets", async () => {
    const r = await cli(...common(), "--dry-run");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("httpd");
    expect(r.stdout).toContain("nginx:alpine");
    expect(r.stdout).toMatch(/\/acme\/nginx@sha256:[0-9a-f]{64}/);
    expect(r.stdout).toContain("Dry run: nothing pushed, no targets added");
  });

  test("missing flags are usage errors (exit 2); failures exit with their code from the table and the reason", async () => {
    const usage = await cli("--containers", repo);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--ref is required");
    const bad = await cli(...common(), "--version", "x");
    expect(bad.code).toBe(2);
    const missing = await cli(...common().map((a) => (a === repo ? join(repo, "nope") : a)));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--containers ${join(repo, "nope")}: no such directory`);
    // A file is not a checkout either, and is said as such (it read "no such directory").
    const file = await cli(...common().map((a) => (a === repo ? join(repo, "httpd", "nginx.conf") : a)));
    expect(file.code).toBe(2);
    expect(file.stderr).toContain(`--containers ${join(repo, "httpd", "nginx.conf")}: it is a file, give a directory; it takes the containers repo checkout`);
    // A --factory-config that is not there is bad usage, as in preload (it was exit 10, as if it were invalid).
    const noConfig = await cli(...common(), "--dry-run", "--factory-config", join(repo, "nope.yml"));
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toContain(`Cannot read --factory-config ${join(repo, "nope.yml")}: no such file`);
    const notGit = join(await tempDir("not-a-checkout-"), "containers");
    mkdirSync(notGit);
    const fail = await cli(...common().map((a) => (a === repo ? notGit : a)));
    expect(fail.code).toBe(11);
    expect(fail.stderr).toMatch(/gateway publish: Cannot run git/);
    const wrongRef = await cli(...common().map((a) => (a === "refs/heads/main" ? "refs/heads/elsewhere" : a)));
    expect(wrongRef.code).toBe(11);
    expect(wrongRef.stderr).toContain("pass --commit");
    const noImage = await cli(...common(), "--dry-run", "--mirror", "docker.io=127.0.0.1:9");
    expect(noImage.code).toBe(12);
    expect(noImage.stderr).toContain('Cannot find image "nginx:alpine"');
  });

  test("a --version already taken exits 16 before any image or app is copied or pushed", async () => {
    const first = await cli(...common(), "--format", "json", "--platform", "linux/arm64");
    expect(first.code, first.stderr).toBe(0);
    const { version } = JSON.parse(first.stdout) as { version: number };
    const again = await cli(...common(), "--platform", "linux/arm64", "--version", String(version));
    expect(again.code, again.stderr).toBe(16);
    expect(again.stderr).toContain(`Cannot make target arm64-linux-${version}: it already exists; choose another --version`);
    expect(again.stderr).not.toMatch(/^image |^app /m); // nothing resolved, copied or pushed first
  });

  test("a registry or server written the wrong way is a usage error (exit 2) that shows the right way", async () => {
    const asUrl = await cli(...common(), "--registry", `http://${upstream.host}`);
    expect(asUrl.code).toBe(2);
    expect(asUrl.stderr).toContain(`--registry takes a registry as HOST[:PORT], not "http://${upstream.host}": give --registry ${upstream.host} --insecure-registry ${upstream.host}`);
    const withPath = await cli(...common(), "--insecure-registry", "reg.example:5000/main");
    expect(withPath.code).toBe(2);
    expect(withPath.stderr).toContain('give --insecure-registry reg.example:5000');
    const noScheme = await cli(...common().map((a) => (a === gw.url ? gw.host : a)));
    expect(noScheme.code).toBe(2);
    expect(noScheme.stderr).toContain(`--server takes the gateway's URL, not "${gw.host}": give --server ${gw.url}`);
  });

  test("a token the gateway does not take, or an http:// --server, says what to do (exit 3, 4)", async () => {
    const wrong = await cli(...common().map((a) => (a === gw.adminToken ? `x${gw.adminToken.slice(1)}` : a)));
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain("gateway answered 403: Token refused: unknown token (give --token, or GATEWAY_TOKEN, a publish token of this gateway: `gateway tokens create --role publish` on it makes one");
    const plain = await cli(...common().map((a) => (a === gw.url ? `http://${gw.host}` : a)));
    expect(plain.code).toBe(4);
    expect(plain.stderr).toContain(`warning: --server http://${gw.host} is plain http: the token travels unencrypted`);
    expect(plain.stderr).toContain(`(the gateway speaks HTTPS: give --server ${gw.url})`);
  });

  test("a misspelt --ref names the refs the checkout has, before anything is resolved (exit 11)", async () => {
    const r = await cli(...common().map((a) => (a === "refs/heads/main" ? "refs/heads/mian" : a)));
    expect(r.code).toBe(11);
    expect(r.stderr).toContain("the checkout has no refs/heads/mian or refs/remotes/origin/mian to check HEAD against (it has refs/heads/main, refs/heads/master); check the spelling of --ref");
  });

  test("a ref that is no branch without --factory-config says to give one (exit 10)", async () => {
    await git(repo, "tag", "-f", "v1");
    const r = await cli(...common().map((a) => (a === "refs/heads/main" ? "refs/tags/v1" : a)), "--dry-run");
    expect(r.code).toBe(10);
    expect(r.stderr).toContain("no --factory-config was given to map it; give --factory-config FILE with a containers.tagging entry for refs/tags/v1");
  });

  test("factory-config.yml: a misspelt section is warned about, and a ref it does not map says the tag is the branch name", async () => {
    const fc = join(await tempDir("fc-"), "factory-config.yml");
    await Bun.write(fc, "container:\n  tagging:\n    refs/heads/main:\n      - tag: production\n");
    const typo = await cli(...common(), "--dry-run", "--factory-config", fc);
    expect(typo.code, typo.stderr).toBe(0);
    expect(typo.stderr).toContain(`warning: ${fc}: line 1: container: unknown key, ignored: did you mean containers?`);
    expect(typo.stderr).toContain(`tags: ${fc} has no containers.tagging entry for refs/heads/main (it has none), so the target tag is the branch name "main"`);
    await Bun.write(fc, "containers:\n  tagging:\n    refs/heads/mian:\n      - tag: production\n");
    const key = await cli(...common(), "--dry-run", "--factory-config", fc);
    expect(key.code, key.stderr).toBe(0);
    expect(key.stderr).toContain(`tags: ${fc} has no containers.tagging entry for refs/heads/main (its entries: refs/heads/mian), so the target tag is the branch name "main"`);
  });

  test("an app name that is not allowed, two apps the device would run as one compose project, or a build without its Dockerfile, stop publish before any image is resolved (exit 10)", async () => {
    const named = await containersRepo({ "My Shop/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n" });
    const badName = await cli(...common().map((a) => (a === repo ? named : a)).map((a) => (a === "refs/heads/main" ? "refs/heads/master" : a)));
    expect(badName.code).toBe(10);
    expect(badName.stderr).toContain('"My Shop" is not a valid app or image name (lowercase letters, digits, . _ -, starting with a letter or digit, at most 128); rename the directory, e.g. to "my-shop"');
    const sameProject = await containersRepo({ "shop.v2/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n", "shopv2/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n" });
    const collide = await cli(...common().map((a) => (a === repo ? sameProject : a)).map((a) => (a === "refs/heads/main" ? "refs/heads/master" : a)));
    expect(collide.code).toBe(10);
    expect(collide.stderr).toContain(`apps "shop.v2" and "shopv2" would run as one compose project ("shopv2") on the device, which drops dots, and remove each other's containers; rename one of the directories`);
    const noDockerfile = await containersRepo({
      "shop/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n  api:\n    build: ./api\n",
      "shop/api/main.go": "package main\n",
    });
    const r = await cli(...common().map((a) => (a === repo ? noDockerfile : a)).map((a) => (a === "refs/heads/main" ? "refs/heads/master" : a)));
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('Cannot publish service "api" in app "shop": there is no Dockerfile at shop/api/Dockerfile; commit one there, or name it with build.dockerfile in shop/docker-compose.yml');
    expect(r.stderr).not.toMatch(/^image /m); // found before nginx:alpine was copied or anything built
  });

  test("--help lists the flags and the exit codes", async () => {
    const r = await cli("--help");
    expect(r.code).toBe(0);
    for (const f of ["--containers", "--ref", "--commit", "--server", "--token", "--factory-config", "--hwid", "--hwid-platform", "--version", "--dry-run", "--format", "--platform"]) {
      expect(r.stdout).toContain(f);
    }
    expect(r.stdout).toContain("Exit codes:");
    for (const code of [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 130, 143]) expect(r.stdout).toMatch(new RegExp(`^ +${code}  \\S`, "m"));
  });
});
