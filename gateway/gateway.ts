/**
 * `gateway serve` as a library: opens the data dir and the store, the TUF
 * repository and the embedded registry, builds the app and listens. The
 * command (commands/serve.ts) and tests call `startGatewayServer`.
 *
 * @module
 */
import { join } from "node:path";
import type { Context } from "hono";
import { hostname } from "node:os";
import { ApiTokenCache } from "./admin/api-tokens.ts";
import { requestCaller } from "./admin/auth.ts";
import { registryAccess, type RegistryIdentity } from "./admin/registry-access.ts";
import { createApp } from "./app.ts";
import { checkFactoryName, DatabaseFlagMissingError, DataDirInUseError, lockDataDir, makeRegistryDir, openDataDir, recordDatabaseKind, servedDatabaseKind, servingPid, SQLITE_DB_FILE, writeServeInfo, serveInfoPath, type DataDir } from "./data-dir.ts";
import { DeviceCache } from "./devices/cache.ts";
import { Sightings } from "./devices/sightings.ts";
import type { Bindings, Gateway, GatewayEnv } from "./env.ts";
import { Metrics } from "./metrics.ts";
import { TufRepo, type AdoptedKey } from "./ota/repo.ts";
import { leapAfterRestore } from "./backup/after-restore.ts";
import { KeyHandoff } from "./ota/key-handoff.ts";
import { startTufRefreshTimer, type TufRefreshTimer } from "./ota/refresh-timer.ts";
import { DEFAULT_LEASE_TTL_MS, LeaderLease, leaseHeldElsewhere } from "./leader.ts";
import { ClockSkewWatch } from "./clock-skew.ts";
import { RegistryJwtSigner } from "./registry/jwt.ts";
import { changeRegistrySetting, checkRegistrySetting, recordRegistrySetting, type RegistrySetting } from "./registry/setting.ts";
import { checkGatewayUrl } from "../lib/cli/flag-values.ts";
import { isNoSpace } from "../lib/fs/why.ts";
import { DiskFull } from "./disk-full.ts";
import { DEFAULT_KEEP_EVENTS, DEFAULT_KEEP_EVENTS_DAYS, EventRetention } from "./event-retention.ts";
import { certificateNotAfter } from "./pki/ca.ts";
import { watchCertificateExpiry } from "./pki/cert-expiry.ts";
import { ForwardedCertVerifier } from "./pki/forwarded-cert.ts";
import { bearerToken, createRegistry, createTokenEndpoint, externalRegistryOnly, verifyRegistryToken } from "./registry/index.ts";
import { checkCanListen, DEFAULT_LIMITS, listen, urlHost, type Listening, type TransportLimits } from "./transport/index.ts";
import { connectionBudget, openFileLimit } from "./transport/connection-caps.ts";
import { listenPlain, parseProxyListen, type PlainListening } from "./transport/plain.ts";
import { createAdmission } from "./admission.ts";
import { CA_FINGERPRINT_META, dbKind, openStore, peekDatabaseMeta, sqliteHoldsNothing } from "./store/open.ts";
import { shownUrl } from "../lib/net/shown-url.ts";
import { CachedTufStorage } from "./store/tuf-cache.ts";
import { StoreUnavailableError } from "./store/types.ts";
import { Rollouts } from "./rollouts/service.ts";
import { TrustedProxies } from "./trusted-proxies.ts";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";

/** How often every replica looks for online keys rotated on another (TufRepo.adoptKeys). */
const KEY_ADOPT_INTERVAL_MS = 5000;
/** The lease whose holder signs for the replicas; while any replica serves, one of them holds it. */
const SIGNER_LEASE = "tuf-signer";

export interface ServeOptions {
  dataDir: string;
  /** HOST:PORT; default 127.0.0.1:8443 (port 0 picks a free one). */
  listen?: string;
  /** postgres://... ; default DIR/gateway.db (sqlite). */
  db?: string;
  /** https://host:port devices and CI use; default the listen address, or this machine's hostname for a wildcard one (0.0.0.0, ::). */
  publicUrl?: string;
  factory?: string;
  tlsCert?: string;
  tlsKey?: string;
  trustProxy?: string;
  clientCertHeader?: string;
  /** `--proxy-listen`: HOST:PORT or unix:/path, plain HTTP for the trusted proxies (transport/plain.ts). */
  proxyListen?: string;
  pollingSeconds?: number;
  /** Lifetimes of TUF metadata in seconds, over the defaults (root and targets 1 year, snapshot 7 days, timestamp 1 day). */
  tufExpiries?: Partial<Record<"root" | "targets" | "snapshot" | "timestamp", number>>;
  /** Connection deadlines and caps (gateway/transport/options.ts has the defaults). */
  limits?: Partial<TransportLimits>;
  /**
   * The `auth.token.service` of an external registry that uses this gateway as its token realm:
   * its tokens are JWTs signed by DATA/pki/registry-token.key (registry/jwt.ts).
   */
  externalRegistryService?: string;
  /** Where the embedded registry keeps blobs and manifests; default DIR/registry. Replicas share one (e.g. NFS). */
  registryDir?: string;
  /** `--registry-change`: record this start's registry setting as the fleet's, replacing the database's record (registry/setting.ts changeRegistrySetting). */
  registryChange?: boolean;
  /** How often the signer-lease holder moves rollouts on (default 5000 ms; 0: never, tests tick by hand). */
  rolloutTickMs?: number;
  /** How long the signer lease outlives a holder that stopped renewing it (default 6000 ms; renewed every third of it). */
  signerLeaseMs?: number;
  /** Background reload of each replica's device views (default 0: only when a new timestamp version appears). */
  rolloutViewPollMs?: number;
  /** `--metrics-per-device`: registry bytes served counted per device on /metrics (registry/served-bytes.ts). */
  metricsPerDevice?: boolean;
  /** How long device events are kept (event-retention.ts; default 180 days; null: for ever), and as the flag gave it. */
  keepEvents?: { ms: number; shown: string } | null;
  /** How often the retention runs on the signer (default an hour; tests shorten it). */
  eventRetentionIntervalMs?: number;
  log?: (line: string) => void;
}

export interface RunningGateway {
  url: string;
  publicUrl: string;
  data: DataDir;
  gw: Gateway;
  stop(): Promise<void>;
}

export class InvalidListenError extends Error {
  override name = "InvalidListenError";
}

export class DataDirMismatchError extends Error {
  override name = "DataDirMismatchError";
  constructor(dir: string) {
    super(`Cannot serve ${dir} with this database: it was created by a gateway with another CA (wrong --db or --data?)`);
  }
}

/** A data dir already served with a database that holds its fleet, given an empty PostgreSQL database. */
export class EmptyDatabaseError extends Error {
  override name = "EmptyDatabaseError";
  constructor(dir: string, db: string, servedWith: "postgres" | "sqlite") {
    super(
      `Cannot serve ${dir} with the database ${shownUrl(db)}: this data dir was served with a database that holds its fleet; this database is empty: ` +
        (servedWith === "postgres"
          ? "restore it first with pg_restore, or give the --db of that database (nothing was written to it)"
          : "it was served with SQLite (its gateway.db, or the --db path it was given): serve it with that, or copy its fleet into PostgreSQL first (nothing was written to it)"),
    );
  }
}

/**
 * A data dir served with SQLite whose database file is gone, or holds nothing (cut to 0 bytes):
 * started, it would make a new, empty fleet beside the CA and keys.
 */
export class MissingDatabaseError extends Error {
  override name = "MissingDatabaseError";
  constructor(dir: string, file: string, why = "which is not there") {
    super(
      `Cannot serve ${dir}: it was served with the SQLite database ${file}, ${why}; a new one would hold no device, ` +
        "token or target, and every device would be refused: put the file back, restore the data dir from a backup (gateway restore), " +
        "or give the --db it was served with (nothing was written)",
    );
  }
}

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):([0-9]{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new InvalidListenError(`Invalid --listen "${value}": expected HOST:PORT, e.g. 127.0.0.1:8443`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export async function startGatewayServer(opts: ServeOptions): Promise<RunningGateway> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const { host, port } = parseListen(opts.listen ?? "127.0.0.1:8443");
  const proxyAddress = opts.proxyListen ? parseProxyListen(opts.proxyListen) : undefined;
  const trustedProxies = new TrustedProxies(opts.trustProxy);
  // A gateway URL as every client's --server is checked (paths are appended to it: devices'
  // sota.toml, the registry's token realm). @throws {UsageError}
  const publicUrl = opts.publicUrl ? checkGatewayUrl("--public-url", opts.publicUrl) : undefined;
  if (opts.factory !== undefined) checkFactoryName(opts.factory);
  const wildcard = host === "0.0.0.0" || host === "::";
  const certHosts = [publicUrl?.hostname.replace(/^\[|\]$/g, "") ?? (wildcard ? hostname() : host), ...(wildcard ? ["127.0.0.1", "localhost"] : [host])];
  // What can fail for a reason outside the data dir is tried before the data dir is made, so a
  // busy port or an unreachable database does not leave a fresh CA and keys behind. The ports are
  // only tried here (taken later, once the server certificate exists); a PostgreSQL --db is opened
  // (a SQLite file may live in the data dir, so it is opened after). A gateway already serving this
  // data dir is said first: its port would be "in use", which names the wrong cause.
  const running = await servingPid(opts.dataDir);
  if (running !== undefined && running !== process.pid) throw new DataDirInUseError(opts.dataDir, running); // as the lock: one process may serve twice (tests)
  checkCanListen({ host, port });
  if (proxyAddress) checkCanListen(proxyAddress);
  const postgres = opts.db && dbKind(opts.db) === "postgres" ? opts.db : undefined;
  // A data dir that was served (DIR/database is written once its database holds the fleet) given a
  // PostgreSQL database that holds no gateway's data: a restored data dir before its pg_restore, or
  // the wrong --db. Started, it would bind that database to this CA and sign version 1 of the TUF
  // metadata anew with the real keys, an empty fleet every device refuses: refused before anything
  // is written there (not even the schema).
  // What the data dir was served with (also for data dirs from before DIR/database), read before openDataDir makes a first start's CA.
  const servedBefore = await servedDatabaseKind(opts.dataDir);
  if (postgres && servedBefore !== undefined && (await peekDatabaseMeta(postgres, CA_FINGERPRINT_META)) === undefined)
    throw new EmptyDatabaseError(opts.dataDir, postgres, servedBefore);
  const external = postgres ? await openStore(postgres, { log }) : undefined;
  let dirLock: Awaited<ReturnType<typeof lockDataDir>>;
  let data: DataDir;
  let store: Awaited<ReturnType<typeof openStore>>;
  try {
    dirLock = await lockDataDir(opts.dataDir);
  } catch (e) {
    await external?.close();
    throw e;
  }
  try {
    if (!opts.db && servedBefore === "postgres") throw new DatabaseFlagMissingError(opts.dataDir);
    // A served data dir's SQLite file gone (deleted, a copy without it, a mistyped --db) or empty
    // (cut to 0 bytes: a copy that failed, a disk that lost it) is not a first start.
    const sqliteFile = external || (opts.db && dbKind(opts.db) !== "sqlite") ? undefined : (opts.db ?? join(opts.dataDir, SQLITE_DB_FILE));
    if (sqliteFile && sqliteFile !== ":memory:" && servedBefore === "sqlite") {
      if (!existsSync(sqliteFile)) throw new MissingDatabaseError(opts.dataDir, sqliteFile);
      if (sqliteHoldsNothing(sqliteFile)) throw new MissingDatabaseError(opts.dataDir, sqliteFile, "which holds nothing (an empty file)");
    }
    data = await openDataDir(opts.dataDir, { ...(opts.factory ? { factory: opts.factory } : {}), hosts: certHosts, ...(opts.registryDir ? { registryDir: opts.registryDir } : {}) });
    store = external ?? (await openStore(sqliteFile!, { log }));
  } catch (e) {
    await external?.close();
    dirLock.release();
    throw e;
  }
  try {
    // A database belongs to one CA (and its TUF keys): refuse a data dir / --db mix-up early.
    if ((await store.claimMeta(CA_FINGERPRINT_META, data.ca.fingerprint)) !== data.ca.fingerprint) throw new DataDirMismatchError(opts.dataDir);
    // Replicas on one PostgreSQL database serve one registry, the one its first start recorded (registry/setting.ts).
    const registry: RegistrySetting = opts.externalRegistryService
      ? { kind: "external", service: opts.externalRegistryService }
      : { kind: "embedded", dir: data.registryDir, flag: opts.registryDir !== undefined };
    const where = { dataDir: opts.dataDir, db: shownUrl(postgres ?? "") };
    // --registry-change: refused while another replica serves; a lease nobody renews is waited out (two of its lifetimes).
    const othersServing = () =>
      leaseHeldElsewhere(store, SIGNER_LEASE, {
        patienceMs: 2 * (opts.signerLeaseMs ?? DEFAULT_LEASE_TTL_MS),
        watchMs: opts.signerLeaseMs ?? DEFAULT_LEASE_TTL_MS,
        onWait: () => log("gateway: --registry-change: another replica holds the signer lease: waiting for it to run out (a replica stopped moments ago) or be renewed (one serving)"),
      });
    const recorded = !postgres
      ? true
      : opts.registryChange
        ? await changeRegistrySetting(store, registry, where, othersServing, log)
        : await checkRegistrySetting(store, registry, where);
    if (opts.registryChange && !postgres) log("gateway: --registry-change: a gateway on SQLite records no registry setting (it may move its registry): nothing to change");
    // Made once the database took the data dir: a start refused above leaves no registry folder behind.
    await makeRegistryDir(data.dir, opts.registryDir);
    if (!recorded) await recordRegistrySetting(store, registry, where, log);
    await recordDatabaseKind(opts.dataDir, external ? "postgres" : "sqlite");
  } catch (e) {
    await store.close();
    dirLock.release();
    throw e;
  }
  let tufTimer: TufRefreshTimer | undefined;
  let keysTimer: ReturnType<typeof setInterval> | undefined;
  let stopCertWatch: (() => void) | undefined;
  // Old device events removed on the signer (event-retention.ts), unless kept for ever.
  const keep = opts.keepEvents === undefined ? { ms: DEFAULT_KEEP_EVENTS_DAYS * 86_400_000, shown: DEFAULT_KEEP_EVENTS } : opts.keepEvents;
  const retention = keep
    ? new EventRetention({ store, keepMs: keep.ms, shown: keep.shown, isLeader: () => signer.isLeader, log, ...(opts.eventRetentionIntervalMs ? { intervalMs: opts.eventRetentionIntervalMs } : {}) })
    : undefined;
  // Writes refused for want of space (data dir, registry storage): said once per spell, answered 507.
  const diskFull = new DiskFull(
    [
      { label: "data", path: data.dir },
      { label: "registry", path: opts.registryDir ?? data.registryDir },
    ],
    log,
  );
  // Replicas on one database: only the holder of the signer lease re-signs timestamp and snapshot.
  const signer = new LeaderLease(store, SIGNER_LEASE, {
    ...(opts.signerLeaseMs !== undefined ? { ttlMs: opts.signerLeaseMs } : {}),
    onAcquire: () => {
      // Back after stepping down for want of a key, it is said when it signs again (onRecover below).
      if (!tufTimer?.failing()) log("gateway: this replica is the TUF signer");
      tufTimer?.runNow();
      void retention?.runNow();
    },
    onLose: (err) =>
      log(
        err === undefined
          ? "gateway: another replica is the TUF signer now"
          : `gateway: no longer the TUF signer: ${isNoSpace(err) ? "its lease could not be written, the disk is full" : "the database did not answer its lease"}; it tries again`,
      ),
    // An unreachable database is logged once by the store, a full disk once by diskFull, not at every renewal.
    onError: (e) => {
      if (isNoSpace(e)) diskFull.note(e);
      else if (!(e instanceof StoreUnavailableError)) log(`gateway: cannot renew the signer lease: ${(e as Error).message}`);
    },
  });
  let server: Listening | undefined;
  let plain: PlainListening | undefined;
  let rollouts: Rollouts | undefined;
  let clockSkew: ClockSkewWatch | undefined;
  const sightings = new Sightings(store, 1000, (e) => diskFull.note(e));
  /**
   * Everything started below, stopped in reverse: by stop() with graceMs for requests in flight,
   * and by a start that failed half way with none. What was not started yet is skipped.
   */
  const shutdown = async (graceMs: number) => {
    await Promise.all([server?.close(graceMs), plain?.close(graceMs)]);
    await rollouts?.stop();
    clockSkew?.stop();
    await tufTimer?.stop();
    clearInterval(keysTimer);
    stopCertWatch?.();
    diskFull.stop();
    await retention?.stop();
    await signer.stop();
    // A last flush that fails (a full disk, an unreachable database) loses a second of last-seen
    // times, nothing a device was promised: the rest of the stop must still run.
    await sightings.stop().catch((e: unknown) => log(`gateway: the last second's check-ins (last seen) were not written: ${(e as Error).message}`));
    await store.close();
    await rm(serveInfoPath(data.dir), { force: true });
    dirLock.release();
  };
  try {
    // On PostgreSQL this replica's clock is compared with the database's (warned when apart, on
    // /metrics), first before anything is signed: the TUF metadata's expiries are reckoned by the
    // database's clock, so a replica whose clock is off signs the same expiries as the others (one
    // an hour behind signed timestamps that devices on the right time took for expired an hour early).
    const metrics = new Metrics({ bytesPerDevice: opts.metricsPerDevice });
    if (store.databaseClock)
      clockSkew = await new ClockSkewWatch({ databaseClock: () => store.databaseClock!(), log, onMeasure: (s) => (metrics.clockSkewSeconds = s) }).start();
    const handoff = new KeyHandoff(data.ca.keyPem, store);
    const tuf = await TufRepo.open({
      storage: new CachedTufStorage(store.tuf),
      keysDir: data.keysDir,
      now: () => new Date(Date.now() - (clockSkew?.skewMs ?? 0)),
      ...(opts.tufExpiries ? { expiries: opts.tufExpiries } : {}),
      // Online keys rotated on one replica reach the others through the database (ota/key-handoff.ts).
      handoff,
      onKeysAdopted: (taken: AdoptedKey[]) => {
        for (const k of taken) log(`gateway: took the new ${k.role} key ${k.keyId.slice(0, 16)} from the database (made by another replica) into ${k.path}`);
      },
    });
    // A restored data dir's first start: above every version the lost gateway signed since the backup.
    const leap = await leapAfterRestore({ dataDir: data.dir, store, tuf });
    if (leap)
      log(
        `gateway: restored from a backup: signed targets, snapshot and timestamp at versions ${leap.to.targets}, ${leap.to.snapshot}, ${leap.to.timestamp} ` +
          `(from ${leap.from.targets}, ${leap.from.snapshot}, ${leap.from.timestamp}), above any the gateway it was made of signed since, so its devices accept them` +
          (leap.needsOfflineKey.length
            ? `; targets.json was not: its key is offline, and devices that took a later targets.json refuse the gateway until it is: put the targets key back in ${join(data.dir, "tuf", "keys")} and restart this gateway before anything is published (the start signs targets.json above the lost gateway's)`
            : ""),
      );
    // A live replica looks for keys rotated elsewhere every few seconds, not only when it next signs.
    let keysWhy = "";
    keysTimer = setInterval(() => {
      tuf.adoptKeys().then(
        () => (keysWhy = ""),
        (e: Error) => {
          if (e.message !== keysWhy) log(`gateway: ${(keysWhy = e.message)}`);
        },
      );
    }, KEY_ADOPT_INTERVAL_MS);
    keysTimer.unref?.();
    const gw: Gateway = {
      store,
      factory: data.factory,
      ca: data.ca,
      adminToken: data.adminToken,
      publicUrl: "", // set once the port is known
      tuf,
      devices: new DeviceCache(store),
      apiTokens: new ApiTokenCache(store),
      sightings,
      metrics,
      diskFull,
      // This replica's failure to sign while it signs, or stays out of the role for it; not once another replica signs.
      tufFailing: () => (signer.isLeader || signer.steppedDown ? tufTimer?.failing() : undefined),
      pollingSeconds: opts.pollingSeconds ?? 300,
    };
    // Rollouts: every replica answers device views from its cache; only the signer moves rollouts on.
    rollouts = new Rollouts({
      store,
      tuf,
      isLeader: () => signer.isLeader,
      ...(opts.rolloutTickMs !== undefined ? { tickMs: opts.rolloutTickMs } : {}),
      ...(opts.rolloutViewPollMs !== undefined ? { viewPollMs: opts.rolloutViewPollMs } : {}),
      counted: (kind) => gw.metrics.rollouts.count(kind),
      log,
    });
    await rollouts.start();
    gw.rollouts = rollouts;
    gw.metrics.rollouts.source = () => rollouts!.gauges();

    const access = registryAccess(gw);
    // One signing key for every replica: the first to claim it in the database gives it to the rest.
    const jwt = opts.externalRegistryService
      ? await RegistryJwtSigner.open(join(data.dir, "pki"), data.factory, handoff, (pem) =>
          log(`gateway: ${pem} held a registry-token key other than the one the replicas share (in the database); it now holds the shared one: the registry's rootcertbundle needs this certificate`),
        )
      : undefined;
    const registryApps = (realm: string) => [
      createTokenEndpoint<RegistryIdentity>({
        ...(jwt ? { external: { service: opts.externalRegistryService!, sign: (claims) => jwt.sign(claims) } } : {}),
        secret: data.registrySecret,
        identify: (c) => access.identify(c as Context<GatewayEnv>),
        checkCredentials: access.checkCredentials,
        allowed: access.allowed,
        subject: access.subject,
      }),
      // The external registry's realm serves no registry of its own: /v2 says where the registry is.
      opts.externalRegistryService
        ? externalRegistryOnly(opts.externalRegistryService)
        : createRegistry({
            root: opts.registryDir ?? data.registryDir,
            tokenSecret: data.registrySecret,
            tokenRealm: realm,
            served: gw.metrics.registryBytes,
            tokenRevoked: access.tokenRevoked,
            log,
            authorize: async (c, want) => {
              const who = await access.identify(c as Context<GatewayEnv>);
              return who !== undefined && access.allowed(who, want.repository, want.action);
            },
          }),
    ];

    // The app needs the public URL (token realm, sota.toml) and the port may be 0: build it lazily.
    let app: ReturnType<typeof createApp> | undefined;
    const forwardedCerts = new ForwardedCertVerifier(data.ca);
    const admit = createAdmission({
      devices: gw.devices,
      tokenValid: async (auth) => {
        const bearer = bearerToken(auth);
        return (bearer !== undefined && verifyRegistryToken(data.registrySecret, bearer) !== undefined) || (await requestCaller(gw, auth)) !== undefined;
      },
    });
    // What both listeners share: the app, the proxies trusted, the forwarded-cert verifier, admission,
    // limits, and the open files left for connections (one budget, not one each).
    const budget = connectionBudget();
    const common = {
      ...(budget ? { connectionBudget: budget } : {}),
      trustedProxies,
      ...(opts.clientCertHeader ? { clientCertHeader: opts.clientCertHeader } : {}),
      forwardedCerts,
      fetch: (req: Request, env: Bindings) => app!.fetch(req, env),
      admit,
      ...(opts.limits ? { limits: opts.limits } : {}),
    };
    server = await listen({
      host,
      port,
      cert: opts.tlsCert ?? data.serverCertPem,
      key: opts.tlsKey ?? data.serverKeyPem,
      clientCa: data.ca.certPem,
      ...common,
      // The device routes' way in without a web Request (routes/checkin.ts).
      fetchHead: (req, env) => app!.fetchHead(req, env),
    });
    gw.metrics.connections = server.stats;
    // The served certificate's end and the factory CA's: logged from 30 days before, and on /metrics (pki/cert-expiry.ts).
    const servedNotAfter = certificateNotAfter(opts.tlsCert ?? data.serverCertPem);
    gw.metrics.tlsCertificateNotAfter = servedNotAfter.getTime();
    gw.metrics.tlsCertificateOwn = !opts.tlsCert;
    gw.metrics.caCertificateNotAfter = data.ca.cert.notAfter.getTime();
    if (data.serverCertRenewed && !opts.tlsCert)
      log(`gateway: issued a new TLS certificate from the factory CA, valid until ${servedNotAfter.toISOString()}: less than a year was left of the old one (it ends at ${data.serverCertRenewed.oldNotAfter})`);
    stopCertWatch = watchCertificateExpiry({ served: servedNotAfter, own: !opts.tlsCert, ca: data.ca.cert.notAfter }, log);
    const askedMax = opts.limits?.maxConnections ?? DEFAULT_LIMITS.maxConnections;
    const max = server.stats().maxConnections;
    if (max < askedMax)
      log(
        // Worded for the default too: --max-connections given or not, the limit is the files.
        `gateway: at most ${max} connections for want of open files (--max-connections is ${askedMax}): the open-file limit is ${openFileLimit()}; ` +
          "raise it (LimitNOFILE= in the systemd unit, ulimit -n) to hold more",
      );
    const publicBase = publicUrl
      ? publicUrl.origin
      : `https://${wildcard ? urlHost(certHosts[0]!) : urlHost(server.host)}:${server.port}`;
    gw.publicUrl = publicBase;
    app = createApp(gw, { registry: registryApps(`${publicBase}/token`) });
    if (proxyAddress) {
      // The same app, verifier and admission as the TLS port's proxy mode, without the TLS hop.
      plain = await listenPlain({ address: proxyAddress, ...common });
      gw.metrics.proxyConnections = plain.stats;
      log(`gateway: plain HTTP for trusted proxies on ${plain.url}`);
    }
    // The signer role is sought only once this replica listens: one that cannot (a port in use)
    // never holds it, even for a moment, nor says it does. Until then isLeader is false, so
    // neither the re-signing below nor the rollouts' ticks run.
    await signer.start();
    retention?.start();
    // Long enough for the other replicas, which try every third of a lease, to take the role.
    const stepDownMs = Math.max(10_000, 3 * (opts.signerLeaseMs ?? DEFAULT_LEASE_TTL_MS));
    tufTimer = startTufRefreshTimer(tuf, {
      shouldRun: () => signer.isLeader,
      // Said when it starts failing and when the reason changes, not at every retry; and when it ends.
      // On PostgreSQL a signer that cannot sign steps down for a while, so that another replica (its
      // own keys readable) signs; alone, it takes the role back after the pause and tries again. On
      // SQLite it is the only gateway of its database: it keeps the role (the rollouts' ticks too).
      onError: (e, previous) => {
        if (external) void signer.stepDown(stepDownMs);
        if (isNoSpace(e)) return void diskFull.note(e);
        const error = e instanceof Error ? e.message : String(e);
        if (error !== previous?.error)
          log(
            `gateway: cannot refresh TUF metadata: ${error} (devices refuse the timestamp once it expires; /healthz warns and /metrics has gateway_tuf_resign_failing 1 until it is re-signed)` +
              (external ? `; another replica may take the signer role, this one seeks it again in ${stepDownMs / 1000} s` : ""),
          );
      },
      onRecover: (ended) => {
        log(`gateway: TUF metadata re-signed again, after failing for ${Math.round((Date.now() - ended.since) / 1000)} s`);
      },
      onRefresh: (r) => {
        if (r.needsOfflineKey.length) log(`gateway: TUF roles near expiry need their offline key: ${r.needsOfflineKey.join(", ")}`);
      },
    });
    const url = `https://${urlHost(server.host)}:${server.port}`;
    // Where the admin commands on this machine reach it (--data DIR reads serve.json): a wildcard
    // address is none to connect to, so loopback, which the certificate names (certHosts above).
    const localUrl = wildcard ? `https://127.0.0.1:${server.port}` : url;
    await writeServeInfo(data.dir, { url: localUrl, publicUrl: publicBase, pid: process.pid });
    if (data.newAdminToken)
      log(`gateway: new data dir ${data.dir}: the admin token is in ${join(data.dir, "admin-token")} (mode 0600; admin commands read it with --data ${data.dir})`);
    // Layer deltas are made with zstd (registry/deltas.ts); without it each device asking says why, but
    // the operator, who can install it, would otherwise never hear of it.
    if (!Bun.which("zstd"))
      log("gateway: zstd is not installed on this host: no layer deltas (devices fetch changed layers whole); install zstd 1.5 or later (Debian's zstd package)");
    // The URL in every target's image references and in new devices' sota.toml: said when it is
    // not the listen address, above all when a wildcard --listen made it this machine's hostname,
    // a name devices elsewhere often cannot resolve (it is in the certificate, so it stays).
    if (publicBase !== url)
      log(
        `gateway: devices and targets use ${publicBase}` +
          (publicUrl ? "" : ` (this machine's hostname, as --listen ${urlHost(host)} names no host): give --public-url https://NAME:PORT if devices reach it by another name`),
      );
    log(`gateway listening on ${url}`);

    let stopping: Promise<void> | undefined;
    return {
      url,
      publicUrl: publicBase,
      data,
      gw,
      stop: () => (stopping ??= shutdown(5000)),
    };
  } catch (err) {
    await shutdown(0);
    throw err;
  }
}
