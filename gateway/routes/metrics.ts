/**
 * GET /metrics: Prometheus text (requests by route and status, devices, events). While the database
 * cannot be reached (a StoreUnavailableError from its reads), the figures kept in memory are still
 * answered, with `gateway_database_up 0` and without the gauges read from the database: a scrape
 * that failed whole would hide the connection counts just when they matter.
 *
 * The route needs no credentials, so what it reads from the database (counts that scan tables,
 * the rollout gauges) is read once for all scrapes within STORE_GAUGES_MAX_AGE_MS
 * (gateway/metrics.ts); each scrape asks the database one keyed row, so `gateway_database_up` is
 * this scrape's, and a failed one drops the kept figures.
 */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";
import { tufExpiries } from "../ota/expiries.ts";
import type { Sample, StoreGauges } from "../metrics.ts";
import { CA_FINGERPRINT_META } from "../store/open.ts";
import { StoreUnavailableError } from "../store/types.ts";
import { MAX_WAITS_PER_DEVICE, waitsEndedPerDevice } from "../devices/waits.ts";

export const metrics = new Hono<GatewayEnv>().get("/metrics", async (c) => {
  const { store, metrics, sightings } = c.var.gw;
  let gauges: StoreGauges | undefined;
  try {
    await store.readMeta(CA_FINGERPRINT_META); // one keyed row: is the database there now
    gauges = await metrics.storeGauges.get(async () => {
      const [devices, events] = await Promise.all([store.countDevices(), store.countEvents(), metrics.rollouts.refresh()]);
      return { devices, events };
    });
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    metrics.storeGauges.forget();
    metrics.rollouts.clear();
  }
  const failed = gauges === undefined;
  const stored: Record<string, Sample> = gauges
    ? {
        gateway_devices: { help: "Registered devices", value: gauges.devices },
        gateway_events: { help: "Stored device events", value: gauges.events },
      }
    : {};
  // When each top-level role's metadata expires: root (and targets) are re-signed only with their
  // offline keys, in a ceremony someone must hold before the date (docs/keys.md); alert on it.
  const expiries = await tufExpiries(c.var.gw.tuf);
  // Free space of the folders the gateway writes to (disk-full.ts), to alert before writes fail.
  const free = (await c.var.gw.diskFull.freeSpace()).filter((f) => f.bytes !== undefined);
  const text = metrics.render({
    gateway_database_up: { help: "1 if the database answered this scrape's reads, 0 if it could not be reached (gateway_devices, gateway_events and the rollout gauges are then left out)", value: failed ? 0 : 1 },
    ...stored,
    gateway_pending_sightings: { help: "Check-ins not yet written", value: sightings.pending },
    gateway_tuf_resign_failing: {
      help: "1 while this replica, the TUF signer, fails to re-sign the timestamp and snapshot (its log and /healthz say why): devices refuse the timestamp once it expires",
      value: c.var.gw.tufFailing?.() ? 1 : 0,
    },
    gateway_push_waits_ended_per_device_total: {
      help: `Push waits answered 204 early because their device opened a newer one past the ${MAX_WAITS_PER_DEVICE} it may hold: a steady rise is a device (or a copied certificate) asking again and again`,
      value: waitsEndedPerDevice(c.var.gw),
      type: "counter",
    },
  });
  const disk = labeledGauge("gateway_disk_free_bytes", "Free bytes on the file system of each folder the gateway writes to (data: its data dir; registry: blob storage)", "dir", free.map((f) => [f.label, f.bytes!]));
  const tuf = labeledGauge(
    "gateway_tuf_expiry_timestamp_seconds",
    "When the signed metadata of each TUF role expires (Unix seconds): devices refuse it after that; root and targets need their offline keys to be re-signed",
    "role",
    expiries.map((e) => [e.role, Math.floor(e.ms / 1000)]),
  );
  return c.text(text + disk + tuf, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});

/** A gauge with one label, one line per value, in Prometheus text; nothing when there are none. */
function labeledGauge(name: string, help: string, label: string, values: [string, number][]): string {
  if (!values.length) return "";
  return [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...values.map(([v, n]) => `${name}{${label}="${v}"} ${n}`)].join("\n") + "\n";
}
