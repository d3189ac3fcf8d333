/** Shared by the rollout tests (here and gateway/rollouts/): a published target entry and admin API calls on a harness gateway. */
import type { TargetEntry } from "../../lib/api/target.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import type { GatewayHandle } from "../harness/gateway.ts";

/** A container-only target of `version` for amd64-linux, tag main, with one app "web" in `registry`. */
export const targetEntry = (version: string, registry = "reg.example"): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${registry}/main/web@sha256:${version.padStart(64, "0")}` } } },
});

/** GET `path` (or POST `body` as JSON) with the admin token; throws on a non-2xx answer. */
export async function adminJson<T>(gw: GatewayHandle, path: string, body?: unknown): Promise<T> {
  const res = await gw.adminFetch(path, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
