/**
 * Prometheus counters kept in memory: requests by route and status. Gauges
 * (devices, events, rollouts) are read from the store when /metrics is scraped, at most once
 * per {@link STORE_GAUGES_MAX_AGE_MS} ({@link SharedRead}), and the transport's connection
 * counts from the function it was given.
 *
 * @module
 */
import { ServedBytes } from "./registry/served-bytes.ts";
import { HELD_SHARE } from "./transport/connection-caps.ts";

/** What the transport reports about its connections (gateway/transport's `Listening.stats`). */
export interface ConnectionCounts {
  open: number;
  unauthenticated: number;
  capped: number;
  timedOut: number;
  /** TLS handshakes completed, and how many of them resumed a session. */
  handshakes?: number;
  resumed?: number;
  /** Requests held open now (push waits), and holds refused because the held share of the connections was taken. */
  held?: number;
  holdsRefused?: number;
  /** The connection cap in force (`--max-connections`, or fewer to fit the open-file limit). */
  maxConnections?: number;
}

/** What the plain listener for a TLS-terminating proxy reports (gateway/transport/plain.ts, `--proxy-listen`). */
export interface PlainListenerStats {
  /** Connections with a request in flight (its cap counts these). */
  busy: number;
  /** Requests refused by the cap since the start. */
  capped: number;
  /** Push waits held now on this listener, and refused because its held share was taken. */
  held: number;
  holdsRefused: number;
}

/** A value for render(): a gauge unless said to be a counter. */
export interface Sample {
  help: string;
  value: number;
  type?: "gauge" | "counter";
}

/** One active rollout as /metrics shows it. */
export interface RolloutGauge {
  rollout: string;
  /** 1-based number of the newest released wave. */
  wave: number;
  devices: { pending: number; succeeded: number; failed: number };
}

/**
 * Rollout figures: transitions counted as this replica makes them (the tick runs on one replica
 * at a time), and per active rollout its wave and members by status, read from the store when
 * /metrics is scraped (`refresh()`), so every replica shows the same gauges.
 */
export class RolloutMetrics {
  readonly #transitions = new Map<string, number>();
  #gauges: RolloutGauge[] = [];
  /** Set by the gateway: reads the active rollouts' gauges. */
  source: (() => Promise<RolloutGauge[]>) | undefined;

  /** Counts one transition or device event of `kind` (created, halted, device-failed...). */
  count(kind: string): void {
    this.#transitions.set(kind, (this.#transitions.get(kind) ?? 0) + 1);
  }

  transitions(kind: string): number {
    return this.#transitions.get(kind) ?? 0;
  }

  /** Reads the gauges again (the /metrics route awaits it before rendering); none are shown if the read fails, not the last ones. */
  async refresh(): Promise<void> {
    if (!this.source) return;
    try {
      this.#gauges = await this.source();
    } catch (err) {
      this.#gauges = [];
      throw err;
    }
  }

  /** Drops the gauges read (the database could not be reached): none are shown, not the last ones. */
  clear(): void {
    this.#gauges = [];
  }

  render(): string[] {
    const esc = (v: string) => v.replace(/[\\"\n]/g, "_");
    const lines = ["# HELP gateway_rollout_transitions_total Rollout transitions and device verdicts by kind", "# TYPE gateway_rollout_transitions_total counter"];
    for (const [kind, n] of this.#transitions) lines.push(`gateway_rollout_transitions_total{kind="${esc(kind)}"} ${n}`);
    lines.push("# HELP gateway_rollout_wave Newest released wave of an active rollout (1-based)", "# TYPE gateway_rollout_wave gauge");
    for (const g of this.#gauges) lines.push(`gateway_rollout_wave{rollout="${esc(g.rollout)}"} ${g.wave}`);
    lines.push("# HELP gateway_rollout_devices Members of an active rollout by status", "# TYPE gateway_rollout_devices gauge");
    for (const g of this.#gauges)
      for (const [status, n] of Object.entries(g.devices)) lines.push(`gateway_rollout_devices{rollout="${esc(g.rollout)}",status="${status}"} ${n}`);
    return lines;
  }
}

/**
 * How old the database's gauges on /metrics may be. /metrics needs no credentials and counting
 * every stored event is a scan of the table (on SQLite on the main thread: 20 scrapes at once,
 * with 3M events, held every device request for 4 s), so a scrape answers the figures read by
 * another within this age instead of reading again; Prometheus scrapes every 15 s or more.
 */
export const STORE_GAUGES_MAX_AGE_MS = 10_000;

/**
 * One read shared by its callers: while it runs, callers wait for it; its value is answered again
 * for `maxAgeMs`; a read that throws is not kept (the next caller reads again).
 */
export class SharedRead<T> {
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  #kept: { at: number; value: T } | undefined;
  #running: Promise<T> | undefined;

  constructor(maxAgeMs: number, now: () => number = () => performance.now()) {
    this.#maxAgeMs = maxAgeMs;
    this.#now = now;
  }

  get(read: () => Promise<T>): Promise<T> {
    if (this.#kept && this.#now() - this.#kept.at < this.#maxAgeMs) return Promise.resolve(this.#kept.value);
    return (this.#running ??= read()
      .then((value) => {
        this.#kept = { at: this.#now(), value };
        return value;
      })
      .finally(() => {
        this.#running = undefined;
      }));
  }

  /** Forgets the kept value: the next get() reads. */
  forget(): void {
    this.#kept = undefined;
  }
}

/** The database's figures on /metrics. */
export interface StoreGauges {
  devices: number;
  events: number;
}

export class Metrics {
  /** Requests by route label, then by status: counting one allocates nothing once both are known. */
  readonly #requests = new Map<string, Map<number, number>>();
  /** Rollout transitions and gauges. */
  readonly rollouts = new RolloutMetrics();
  /** The database's gauges, read by one scrape for the others (STORE_GAUGES_MAX_AGE_MS). */
  readonly storeGauges = new SharedRead<StoreGauges>(STORE_GAUGES_MAX_AGE_MS);
  /** Set by whoever runs a transport; /metrics shows its connection counts. */
  connections: (() => ConnectionCounts) | undefined;
  /** Set when `--proxy-listen` runs; /metrics shows its connections beside the TLS port's. */
  proxyConnections: (() => PlainListenerStats) | undefined;
  /** When the TLS certificate the gateway serves ends (ms since the epoch), set once it listens. */
  tlsCertificateNotAfter: number | undefined;
  /** Whether the served certificate is the gateway's own (renewed by a restart), not --tls-cert. */
  tlsCertificateOwn: boolean | undefined;
  /** When the factory CA ends (ms since the epoch), and with it every certificate it issued; set once the gateway listens. */
  caCertificateNotAfter: number | undefined;
  /** Registry bytes served per client: what devices downloaded, counted by the gateway (per device only if asked: ./registry/served-bytes.ts). */
  readonly registryBytes: ServedBytes;
  readonly started = Date.now();
  /** The start on the monotonic clock: the uptime does not jump with the wall clock. */
  readonly #startedAt = performance.now();
  /** This replica's clock minus the database's, in seconds (clock-skew.ts); PostgreSQL only. */
  clockSkewSeconds: number | undefined;

  constructor(opts: { bytesPerDevice?: boolean } = {}) {
    this.registryBytes = new ServedBytes({ perDevice: opts.bytesPerDevice });
  }

  count(route: string, status: number) {
    let byStatus = this.#requests.get(route);
    if (!byStatus) this.#requests.set(route, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  requests(route: string, status: number): number {
    return this.#requests.get(route)?.get(status) ?? 0;
  }

  /** Requests so far, all statuses, whose route label passes `match` (the dashboard's check-ins per minute). */
  requestsWhere(match: (route: string, status: number) => boolean): number {
    let n = 0;
    for (const [route, byStatus] of this.#requests) for (const [status, count] of byStatus) if (match(route, status)) n += count;
    return n;
  }

  render(gauges: Record<string, Sample>): string {
    const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
    const lines = ["# HELP gateway_requests_total HTTP requests by route and status", "# TYPE gateway_requests_total counter"];
    for (const [route, byStatus] of this.#requests)
      for (const [status, n] of byStatus) lines.push(`gateway_requests_total{route="${esc(route)}",status="${status}"} ${n}`);
    lines.push(...this.registryBytes.render());
    lines.push(...this.rollouts.render());
    const conns = this.connections?.();
    const proxied = this.proxyConnections?.();
    const held = (conns?.held ?? 0) + (proxied?.held ?? 0);
    const holdsRefused = (conns?.holdsRefused ?? 0) + (proxied?.holdsRefused ?? 0);
    const samples: Record<string, Sample> = {
      gateway_uptime_seconds: { help: "Seconds since the gateway started", value: (performance.now() - this.#startedAt) / 1000 },
      ...(this.tlsCertificateNotAfter !== undefined
        ? {
            gateway_tls_certificate_expiry_timestamp_seconds: {
              help: "When the TLS certificate the gateway serves ends (Unix seconds): devices refuse it after that; a start renews the gateway's own one when less than a year is left",
              value: Math.floor(this.tlsCertificateNotAfter / 1000),
            },
          }
        : {}),
      ...(this.caCertificateNotAfter !== undefined
        ? {
            gateway_ca_certificate_expiry_timestamp_seconds: {
              help: "When the factory CA ends (Unix seconds): from then devices refuse the gateway and the gateway every device; nothing renews it (docs/keys.md)",
              value: Math.floor(this.caCertificateNotAfter / 1000),
            },
          }
        : {}),
      ...(conns
        ? {
            gateway_connections_open: { help: "Open client connections", value: conns.open },
            ...(conns.maxConnections !== undefined
              ? { gateway_connections_max: { help: "The connection cap in force: --max-connections, or fewer to fit the open-file limit", value: conns.maxConnections } }
              : {}),
            gateway_connections_unauthenticated: { help: "Open connections whose client has not authenticated", value: conns.unauthenticated },
            gateway_connections_capped_total: { help: "Connections closed by a connection cap", value: conns.capped, type: "counter" },
            gateway_connections_timed_out_total: { help: "Connections cut by a head, body or stall deadline", value: conns.timedOut, type: "counter" },
            ...(conns.handshakes !== undefined
              ? {
                  gateway_tls_handshakes_total: { help: "TLS handshakes completed, full and resumed", value: conns.handshakes, type: "counter" as const },
                  gateway_tls_resumed_total: { help: "TLS handshakes that resumed a session (no certificate exchange)", value: conns.resumed ?? 0, type: "counter" as const },
                }
              : {}),
          }
        : {}),
      ...(proxied
        ? {
            gateway_proxy_connections_busy: { help: "Connections from the TLS-terminating proxy (--proxy-listen) with a request in flight; idle kept-alive ones are not seen", value: proxied.busy },
            gateway_proxy_connections_capped_total: { help: "Requests on the --proxy-listen listener refused by its cap (--max-connections busy)", value: proxied.capped, type: "counter" as const },
          }
        : {}),
      ...(conns || proxied
        ? {
            gateway_push_waits_held: { help: "Push waits (GET /repo/wait) held open now, on the TLS port and --proxy-listen together", value: held },
            gateway_push_waits_refused_total: {
              help: `Push waits answered 503 at once because the held share (${Math.round(HELD_SHARE * 100)}%) of the connection limit was taken: those devices poll`,
              value: holdsRefused,
              type: "counter" as const,
            },
          }
        : {}),
      ...(this.clockSkewSeconds !== undefined
        ? { gateway_clock_skew_seconds: { help: "This replica's clock minus the database's (seconds, measured every minute): replicas need synchronised clocks (NTP); beyond 3 s the gateway warns", value: this.clockSkewSeconds } }
        : {}),
      ...gauges,
    };
    for (const [name, g] of Object.entries(samples)) {
      lines.push(`# HELP ${name} ${g.help}`, `# TYPE ${name} ${g.type ?? "gauge"}`, `${name} ${g.value}`);
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
