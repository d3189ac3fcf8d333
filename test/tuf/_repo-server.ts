/**
 * What the TUF client tests share: a signed target entry, and the gateway's TufRepo served over
 * HTTP on 127.0.0.1 the way GET /repo/<file> serves it, with per-file overrides standing for
 * what a compromised server or a network attacker answers instead.
 *
 * @module
 */
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import type { TufRepo } from "../../gateway/ota/index.ts";

/** A container-only target entry with one app pinned by digest. */
export const targetEntry = (version: number, hwid = "rpi"): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: [hwid], tags: ["main"], docker_compose_apps: { web: { uri: `127.0.0.1:5000/main/web@sha256:${"a".repeat(64)}` } } },
});

export interface RepoServer {
  /** `http://127.0.0.1:PORT/repo/` */
  baseUrl: string;
  /** File name → bytes (or a response) served instead of the repository's. */
  overrides: Map<string, Uint8Array | (() => Response)>;
  /** Headers of every request, in order. */
  seenHeaders: Record<string, string>[];
  stop(): Promise<void>;
}

/** Serves `repo()` (a getter, so a test may swap the repository) under /repo/. */
export function serveRepo(repo: () => TufRepo): RepoServer {
  const overrides = new Map<string, Uint8Array | (() => Response)>();
  const seenHeaders: Record<string, string>[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      seenHeaders.push(Object.fromEntries(req.headers));
      const name = new URL(req.url).pathname.replace(/^\/repo\//, "");
      const o = overrides.get(name);
      if (typeof o === "function") return o();
      const bytes = o ?? (await repo().metadata(name));
      return bytes ? new Response(bytes, { headers: { "content-type": "application/json" } }) : new Response("not found", { status: 404 });
    },
  });
  return { baseUrl: `http://127.0.0.1:${server.port}/repo/`, overrides, seenHeaders, stop: () => server.stop(true) };
}
