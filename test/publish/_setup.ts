/**
 * What every publish test needs: the private dockerd with the fixtures' base
 * image loaded, an "upstream" docker-registry serving a busybox-based
 * `library/nginx:alpine` (amd64 + arm64 index), and the fixture containers
 * repo copied into a temp dir as a git checkout on `master`.
 *
 * @module
 */
import { cp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { busyboxImageTar, writeOciLayout } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";

export const FIXTURES = join(import.meta.dir, "..", "fixtures", "containers");

/** The fake nginx: busybox httpd serving the mounted config directory. */
export const NGINX_OPTS = {
  cmd: ["httpd", "-f", "-p", "80", "-h", "/etc/nginx/conf.d"],
  exposedPorts: ["80/tcp"],
  files: { "/etc/nginx/conf.d/.keep": "" },
  tag: "library/nginx:alpine",
};

export async function loadBaseImage(dockerd: DockerdHandle): Promise<void> {
  await dockerd.docker("load", "-i", await busyboxImageTar({ tag: "fixtures/busybox:latest" }));
}

/** Pushes the multi-platform fake `nginx:alpine` into `reg` with skopeo; returns the index digest. */
export async function pushUpstreamNginx(reg: DockerRegistryHandle, repo = "library/nginx", tag = "alpine"): Promise<string> {
  const dir = await tempDir("nginx-layout-");
  const layout = await writeOciLayout(dir, { ...NGINX_OPTS, platforms: ["linux/amd64", "linux/arm64"], tag: `${repo}:${tag}` });
  await run(["skopeo", "copy", "--all", "--dest-tls-verify=false", `oci:${dir}:${tag}`, `docker://${reg.host}/${repo}:${tag}`]);
  return layout.digest;
}

const GIT_ENV = {
  GIT_AUTHOR_NAME: "ci",
  GIT_AUTHOR_EMAIL: "ci@example.invalid",
  GIT_COMMITTER_NAME: "ci",
  GIT_COMMITTER_EMAIL: "ci@example.invalid",
  GIT_CONFIG_NOSYSTEM: "1",
  HOME: "/nonexistent",
};

/** Runs git in `dir` with a fixed identity. */
export async function git(dir: string, ...args: string[]): Promise<string> {
  return (await run(["git", "-C", dir, ...args], { env: GIT_ENV })).stdout.trim();
}

/** Copies the fixture apps (or `files` alone) into a new git checkout on master; returns its path. */
export async function containersRepo(files?: Record<string, string>): Promise<string> {
  const dir = await tempDir("containers-");
  if (files) {
    for (const [p, c] of Object.entries(files)) {
      await Bun.write(join(dir, p), c);
    }
  } else {
    await cp(FIXTURES, dir, { recursive: true });
  }
  await git(dir, "init", "-q", "-b", "master");
  await git(dir, "add", "-A");
  await git(dir, "commit", "-q", "-m", "containers");
  return dir;
}

/** Commits `files` on top of the checkout. */
export async function commit(dir: string, files: Record<string, string>, message = "change"): Promise<string> {
  for (const [p, c] of Object.entries(files)) await writeFile(join(dir, p), c);
  await git(dir, "add", "-A");
  await git(dir, "commit", "-q", "-m", message);
  return await git(dir, "rev-parse", "HEAD");
}
