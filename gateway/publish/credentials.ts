/**
 * Registry credentials the way docker keeps them: `$DOCKER_CONFIG/config.json`
 * (default `~/.docker/config.json`), `auths[host].auth` = base64 `user:password`.
 * Credential helpers are not run.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** Credentials for `registry` (host[:port]; `docker.io` also matches Docker Hub's legacy key), if any. */
export function dockerCredentials(registry: string, env: Record<string, string | undefined> = process.env): { username: string; password: string } | undefined {
  const dir = env.DOCKER_CONFIG ?? join(homedir(), ".docker");
  let cfg: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
  try {
    cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  } catch {
    return undefined;
  }
  const keys = registry === "docker.io" ? ["docker.io", "https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"] : [registry, `https://${registry}`, `http://${registry}`];
  for (const k of keys) {
    const a = cfg.auths?.[k];
    if (!a) continue;
    if (a.username && a.password) return { username: a.username, password: a.password };
    if (a.auth) {
      const s = Buffer.from(a.auth, "base64").toString("utf8");
      const i = s.indexOf(":");
      if (i > 0) return { username: s.slice(0, i), password: s.slice(i + 1) };
    }
  }
  return undefined;
}
