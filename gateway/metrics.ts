/**
 * Prometheus counters kept in memory: requests by route and status. Gauges
 * (devices, events) are read from the store when /metrics is scraped.
 *
 * @module
 */
import { ServedBytes } from "./registry/served-bytes.ts";

export class Metrics {
  readonly #requests = new Map<string, number>();
  /** Registry bytes served per client: what devices downloaded, counted by the gateway. */
  readonly registryBytes = new ServedBytes();
  readonly started = Date.now();

  count(route: string, status: number) {
    const key = `${route}\u0000${status}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  requests(route: string, status: number): number {
    return this.#requests.get(`${route}\u0000${status}`) ?? 0;
  }

  render(gauges: Record<string, { help: string; value: number }>): string {
    const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
    const lines = ["# HELP gateway_requests_total HTTP requests by route and status", "# TYPE gateway_requests_total counter"];
    for (const [key, n] of this.#requests) {
      const [route, status] = key.split("\u0000");
      lines.push(`gateway_requests_total{route="${esc(route!)}",status="${status}"} ${n}`);
    }
    lines.push(...this.registryBytes.render());
    for (const [name, g] of Object.entries({
      gateway_uptime_seconds: { help: "Seconds since the gateway started", value: (Date.now() - this.started) / 1000 },
      ...gauges,
    })) {
      lines.push(`# HELP ${name} ${g.help}`, `# TYPE ${name} gauge`, `${name} ${g.value}`);
    }
    return lines.join("\n") + "\n";
  }
}

const DEVICE_PATHS = new Set(["/events", "/apps-states", "/system_info", "/system_info/network", "/system_info/config", "/device", "/devices"]);
const PUBLIC_PATHS = new Set(["/healthz", "/metrics", "/openapi.json", "/ca.pem", "/token"]);

/** A bounded route label for a path, so metrics never grow with uuids or digests. */
export function routeLabel(path: string): string {
  if (DEVICE_PATHS.has(path) || PUBLIC_PATHS.has(path)) return path;
  if (path.startsWith("/repo/")) return path.endsWith("timestamp.json") ? "/repo/timestamp.json" : "/repo/*";
  if (path.startsWith("/v2/") || path === "/v2") return "/v2/*";
  if (path.startsWith("/admin/")) {
    const parts = path.split("/"); // ["", "admin", resource, id?, action?]
    const res = parts[2] ?? "";
    if (!["devices", "targets", "tokens", "keys"].includes(res)) return "/admin/other";
    return ["", "admin", res, ...(parts[3] ? [res === "keys" ? parts[3] : ":id"] : []), ...(parts[4] ? [parts[4]] : [])].join("/").slice(0, 64);
  }
  return "other";
}
