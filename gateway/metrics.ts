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

/**
 * The label of a request for its route pattern (Hono's `routePath`): the pattern itself, "other"
 * when nothing but the catch-all middleware matched. Never built from the raw path, so unknown
 * paths (`/admin/keys/<anything>`) cannot create new label values.
 */
export function routeLabel(routePath: string): string {
  return routePath === "/*" || routePath === "*" || routePath === "" ? "other" : routePath;
}
