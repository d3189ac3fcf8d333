/**
 * The agent's MQTT side (MQTT.js): subscribes to the desired state, its
 * commands and current-state requests; publishes feedback and the retained
 * current state (on every connect with activityId `initial-current-state-<ms>`,
 * on request, after every apply). One activity at a time: a second desired
 * state while one runs is refused with IDENTIFICATION_FAILED.
 *
 * One agent per state dir: it holds `<state_dir>/agent.lock` (lib/fs/pid-lock.ts)
 * while it runs. Two agents on one device (`fioup agent` beside a `fioup daemon`
 * whose config has an `[mqtt]` table) would apply the same desired state twice
 * and undo each other's containers in their rollbacks.
 *
 * A desired state is applied once: the ids of the activities that ended, and the
 * newest timestamp applied, are kept in the state dir (activity.ts), so a
 * retained desired state that comes again at every connect is ignored with a log
 * line instead of being applied again (and its end told twice); a new one with an
 * older timestamp than the last applied is refused (IDENTIFICATION_FAILED).
 *
 * A rollback the engine interrupted (it went away mid-apply) is not left for a
 * next start that may never come: the agent retries it with the same backoff
 * as the broker's, publishes the activity's end once it succeeds, and finishes
 * it (or refuses, saying why) before it takes another desired state.
 *
 * When the broker goes away MQTT.js reconnects; the delay doubles from 1 s up
 * to 30 s and resets once connected. A broker that lost its retained messages
 * (restarted without persistence) gets the current state again on reconnect.
 * A failed or lost connection is logged naming the broker (its password masked)
 * and why, once per problem rather than at every retry. A connection whose
 * subscriptions the broker refuses (its ACL) counts as failed: it would never
 * get a desired state, so it is closed and retried with the same backoff.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { acquireLock, LockedError } from "../../lib/fs/pid-lock.ts";
import { feedbackOf, ActivityStore, type Activity, type JudgedUnder } from "./activity.ts";
import { ApplyFailedError, reason, type ApplyDeps } from "./_phase.ts";
import { identify, IdentificationError } from "./identify.ts";
import { activate, applyAll, cleanup, download, update } from "./phases.ts";
import { recoverActivity } from "./recover.ts";
import { rollback } from "./rollback.ts";
import type { AgentConfig } from "./config.ts";
import { backoffDelay } from "../../lib/net/backoff.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";
import { netWhy } from "../../lib/net/why.ts";
import { ContainerEngine } from "./container-engine.ts";
import { currentState, readContainers } from "./current-state.ts";
import { envelope, type Feedback } from "./feedback.ts";
import { faultPoint } from "../fault.ts";
import { ImageSource } from "./images.ts";
import {
  CommandMessage,
  CurrentStateGetMessage,
  DesiredStateMessage,
  InvalidMessageError,
  parseMessage,
  TOPICS,
  type CommandName,
} from "./messages.ts";

/**
 * The broker URL as MQTT.js's own options. Given the URL as a string, MQTT.js reads it with
 * Node's legacy url.parse, which prints a DeprecationWarning (DEP0169) into the journal at every
 * start; read here with the WHATWG URL into the same fields. Credentials in the URL come as
 * username and password, not as MQTT.js's `auth` ("user:pass", which it splits at the last colon,
 * so a password holding one was cut wrongly); spread last, they still win over the [mqtt] keys.
 */
export function brokerOptions(url: string): IClientOptions {
  const u = new URL(url);
  return {
    protocol: u.protocol.replace(/:$/, "") as IClientOptions["protocol"],
    host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
    ...(u.port ? { port: Number(u.port) } : {}),
    path: `${u.pathname || "/"}${u.search}`,
    ...(u.username ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : {}),
  };
}

export interface AgentOptions {
  cfg: AgentConfig;
  /** A line for the operator (the command prints it with a timestamp). */
  log(line: string): void;
  signal: AbortSignal;
  version: string;
  /** Called once the agent holds its state dir (before it connects). */
  onLocked?(): void;
}

/** Retries (the broker, a failed rollback, the agent inside `fioup daemon`) wait this long first, doubling up to the max. */
export const MIN_BACKOFF_MS = 1000;
export const MAX_BACKOFF_MS = 30_000;
/** Download progress is published at most this often; status changes at once. */
const PROGRESS_EVERY_MS = 250;

/** MQTT's CONNACK refusals of the client's credentials (3.1.1: 4, 5; 5.0: 0x86, 0x87). */
const CREDENTIALS_REFUSED = new Set([4, 5, 0x86, 0x87]);

/**
 * Why the broker could not be reached or dropped the agent, in words, with the hint the URL
 * makes obvious: MQTT.js says only "read ECONNRESET" or "Connection refused: Not authorized".
 */
function brokerWhy(err: Error, url: string): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "number" && CREDENTIALS_REFUSED.has(code)) {
    return `${err.message.replace(/^Connection refused: /, "the broker refused the login: ")} (check username and password in the [mqtt] table)`;
  }
  // A TLS hello sent to a plain port: the broker hangs up without an answer.
  if (code === "ECONNRESET" && /^(mqtts|wss):/.test(url)) return `${netWhy(err)} (is the broker's port TLS? use mqtt:// for a plain port)`;
  // A TLS broker whose certificate no CA we were given signed (a private broker's own CA).
  if (typeof code === "string" && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code))
    return `its TLS certificate is not trusted (${err.message}): set ca in the [mqtt] table, or --ca, to the CA that signed it`;
  return netWhy(err);
}

/** Another agent runs with the same state dir (exit 13, as any lock fioup cannot take). */
export class AgentRunningError extends LockedError {
  override name = "AgentRunningError";
  constructor(path: string, pid: number, stateDir: string) {
    super(path, pid);
    this.message =
      `Cannot start the agent: another agent (PID ${pid}) runs with the state dir ${stateDir} ` +
      "(`fioup agent`, or `fioup daemon` with an [mqtt] table, which runs one too): enable one of them, not both";
  }
}

export class Agent {
  private client?: MqttClient;
  private readonly engine: ContainerEngine;
  private readonly store: ActivityStore;
  private readonly images: ImageSource;
  /** The activity in progress (applying, or waiting for its next command). */
  private active?: Activity;
  /** A phase of the active activity is running. */
  private working = false;
  private commands: Promise<void> = Promise.resolve();
  private lastProgressAt = -Infinity; // performance.now(), monotonic
  private progressTimer?: ReturnType<typeof setTimeout>;
  /** The activity whose rollback failed (the engine went away), why it was rolled back, how often its retries failed, and its next retry. */
  private unfinished?: { a: Activity; why: string; failures: number; timer?: ReturnType<typeof setTimeout> };
  /** The retry of the unfinished activity under way: a desired state arriving meanwhile waits for it. */
  private retrying?: Promise<string | undefined>;

  constructor(private readonly o: AgentOptions) {
    this.engine = new ContainerEngine(o.cfg.dockerHost);
    this.store = new ActivityStore(o.cfg.stateDir);
    this.images = new ImageSource({ engine: this.engine, storeRoot: o.cfg.storeRoot, registries: o.cfg.registries });
  }

  private deps(): ApplyDeps {
    return {
      engine: this.engine,
      images: this.images,
      store: this.store,
      instance: this.o.cfg.instance,
      signal: this.o.signal,
      onChange: (a, progressOnly) => this.changed(a, progressOnly),
      log: (line) => this.o.log(line),
    };
  }

  /**
   * Connects and serves until the signal aborts.
   * @throws {AgentRunningError} Another agent holds the state dir.
   * @throws {EngineError} The engine cannot be reached at start.
   */
  async run(): Promise<void> {
    const dir = this.o.cfg.stateDir;
    mkdirSync(dir, { recursive: true });
    const path = join(dir, "agent.lock");
    let lock;
    try {
      lock = acquireLock(path);
    } catch (err) {
      if (err instanceof LockedError) throw new AgentRunningError(path, err.pid, dir);
      throw err;
    }
    try {
      this.o.onLocked?.();
      await this.serve();
    } finally {
      lock.release();
    }
  }

  private async serve(): Promise<void> {
    await this.engine.version();
    const pending = this.store.load();
    if (pending) {
      // Before the broker: a device that lost power mid-apply is made whole even offline.
      this.o.log(`found activity ${pending.activityId} interrupted in phase ${pending.phase}`);
      this.active = pending;
      // A failure here (engine gone) ends run(): `fioup agent` exits and its service manager starts
      // it again; the agent inside `fioup daemon` is started again with backoff (beside-daemon.ts).
      await recoverActivity(this.deps(), pending);
      this.recovered = pending;
    }
    const { cfg } = this.o;
    const opts: IClientOptions = {
      clientId: cfg.clientId,
      clean: true,
      // Reconnects are ours (below): MQTT.js retries at a fixed period only.
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 30,
      ...(cfg.username !== undefined ? { username: cfg.username, password: cfg.password ?? "" } : {}),
      ...(cfg.tls.ca ? { ca: cfg.tls.ca } : {}),
      ...(cfg.tls.cert ? { cert: cfg.tls.cert } : {}),
      ...(cfg.tls.key ? { key: cfg.tls.key } : {}),
    };
    const client = mqtt.connect({ ...opts, ...brokerOptions(cfg.url) });
    this.client = client;
    const broker = `the broker ${shownUrl(cfg.url)}`;
    /** Closes since the agent last connected (and subscribed): the next reconnect waits {@link backoff}. */
    let closes = 0;
    const backoff = () => backoffDelay(closes + 1, MIN_BACKOFF_MS, MAX_BACKOFF_MS);
    let retry: ReturnType<typeof setTimeout> | undefined;
    /** Connected since the last close: a close then is a lost connection, not a failed attempt. */
    let up = false;
    /** The problem of this attempt, said at its error or else at its close. */
    let failed = false;
    /** The last problem logged: the same one on every retry is said once, until it changes or the agent connects. */
    let told: string | undefined;
    const problem = (why: string) => tell(`${up ? "Lost" : "Cannot connect to"} ${broker}: ${why}`);
    const tell = (line: string) => {
      failed = true;
      if (line === told) return;
      told = line;
      const wait = backoff();
      this.o.log(`${line}; reconnecting in ${wait} ms${wait === MIN_BACKOFF_MS ? ` (the delay doubles up to ${MAX_BACKOFF_MS / 1000} s)` : ""}`);
    };
    client.on("connect", () => {
      up = true;
      void this.connected().then((refused) => {
        if (refused === undefined) {
          closes = 0;
          told = undefined;
          return;
        }
        // Connected but deaf (the broker's ACL): a connection that would never get a desired state is
        // not kept. It is closed, and the close retries with backoff; said once, while it stays so.
        tell(`Cannot use ${broker}: it refused the subscription to ${refused}: desired states will not be received until it accepts it (check the broker's ACL for this client)`);
        client.end(true);
      });
    });
    client.on("close", () => {
      if (this.o.signal.aborted || retry) return;
      if (!failed) problem(up ? "the connection closed" : "it closed the connection");
      up = false;
      failed = false;
      retry = setTimeout(() => {
        retry = undefined;
        if (this.o.signal.aborted) return;
        // reconnect() starts MQTT.js on an empty store: what was not acknowledged is dropped (connected() sends an end again).
        this.endInFlight = undefined;
        client.reconnect();
      }, backoff());
      closes++;
    });
    client.on("error", (err) => {
      if (!this.o.signal.aborted) problem(brokerWhy(err, cfg.url));
    });
    client.on("message", (topic, payload) => void this.message(topic, payload));
    await new Promise<void>((resolve) => {
      if (this.o.signal.aborted) return resolve();
      this.o.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    // Let a running phase reach its next persisted point; the next start finishes it.
    const deadline = performance.now() + 5000;
    while (this.working && performance.now() < deadline) await Bun.sleep(50);
    clearTimeout(retry);
    clearTimeout(this.unfinished?.timer);
    await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }

  /** An activity finished at start (after a crash), whose feedback waits for the broker. */
  private recovered?: Activity;
  /** The activity whose end was published since the last reconnect and is not acknowledged yet. */
  private endInFlight?: string;

  /** Once connected: ends to publish, subscriptions; the topics the broker refused, and why, if it refused any. */
  private async connected(): Promise<string | undefined> {
    const client = this.client!;
    if (this.recovered) {
      const a = this.recovered;
      this.recovered = undefined;
      this.finish(a);
    } else if (!this.active) {
      // An end published while the broker was away, or not acknowledged before the link dropped, is
      // gone: MQTT.js's reconnect starts with an empty store of unacknowledged messages.
      const left = this.store.load();
      if (left?.phase === "done") this.resendEnd(left);
    }
    // A clean session each time: subscribe again on every connect.
    const topics = [TOPICS.desiredState, TOPICS.command, TOPICS.currentStateGet];
    const refused = await new Promise<string | undefined>((resolve) =>
      client.subscribe(topics, { qos: 1 }, (err) => {
        if (!err) return resolve(undefined);
        // The SUBACK's codes, one per topic in order (0x80 and up: refused), when the broker answered.
        const codes = (err as { packet?: { granted?: unknown } }).packet?.granted;
        if (!Array.isArray(codes)) {
          this.o.log(`cannot subscribe: ${err.message}`); // the connection went first: its close reconnects
          return resolve(undefined);
        }
        resolve(`${topics.filter((_, i) => typeof codes[i] !== "number" || codes[i] >= 0x80).join(", ")} (${err.message})`);
      }),
    );
    if (refused !== undefined) return refused;
    this.o.log(`connected to ${shownUrl(this.o.cfg.url)}`);
    await this.publishCurrentState(`initial-current-state-${Date.now()}`);
    return undefined;
  }

  private publish(topic: string, body: unknown, opts: { retain?: boolean } = {}, done?: () => void): void {
    this.client?.publish(topic, JSON.stringify(body), { qos: 1, retain: opts.retain ?? false }, (err) => {
      if (err) this.o.log(`cannot publish on ${topic}: ${err.message}`);
      else done?.();
    });
  }

  private feedback(activityId: string, f: Feedback, done?: () => void): void {
    this.publish(TOPICS.feedback, envelope(activityId, f), {}, done);
  }

  private changed(a: Activity, progressOnly = false): void {
    // The end is finish's to report, once (a progress tick may still be due).
    if (a.phase === "done") return;
    if (progressOnly) {
      const wait = this.lastProgressAt + PROGRESS_EVERY_MS - performance.now();
      if (wait > 0) {
        this.progressTimer ??= setTimeout(() => {
          this.progressTimer = undefined;
          this.changed(a, true);
        }, wait);
        return;
      }
    }
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.lastProgressAt = performance.now();
    this.feedback(a.activityId, feedbackOf(a));
  }

  /**
   * An apply that failed outside its phases (the engine went away): roll back
   * now if possible; else the rollback is retried with backoff (the activity
   * stays active and persisted, its end unpublished until the rollback ends).
   */
  private async unexpected(d: ApplyDeps, a: Activity, err: unknown): Promise<void> {
    const why = reason(err);
    this.o.log(`activity ${a.activityId} failed: ${why}`);
    await this.rollbackOrRetry(d, a, why);
  }

  /** Rolls back; if that fails, leaves the activity unfinished and schedules its retry. */
  private async rollbackOrRetry(d: ApplyDeps, a: Activity, why: string): Promise<void> {
    try {
      await rollback(d, a, why);
    } catch (err) {
      this.unfinished = { a, why, failures: 0 };
      this.retryLater(reason(err));
    }
  }

  /** Says the rollback failed (a progress feedback, not the end) and schedules the next try, the delay doubling up to 30 s. */
  private retryLater(failure: string): void {
    const u = this.unfinished!;
    const delay = backoffDelay(++u.failures, MIN_BACKOFF_MS, MAX_BACKOFF_MS);
    u.a.message = `${u.why}; the rollback failed (${failure}): the agent retries it in ${delay / 1000} s`;
    this.o.log(`activity ${u.a.activityId}: ${u.a.message}${delay === MIN_BACKOFF_MS ? ` (the delay doubles up to ${MAX_BACKOFF_MS / 1000} s)` : ""}`);
    this.changed(u.a);
    clearTimeout(u.timer);
    u.timer = setTimeout(() => void this.finishUnfinished(), delay);
  }

  /**
   * Runs the recovery of the unfinished activity (one run at a time): undefined once it
   * ended (its end published), else why it failed again (the next try is scheduled).
   */
  private finishUnfinished(): Promise<string | undefined> {
    this.retrying ??= (async () => {
      const u = this.unfinished;
      if (!u || this.o.signal.aborted) return undefined;
      clearTimeout(u.timer);
      this.working = true;
      try {
        await recoverActivity(this.deps(), u.a, u.why);
      } catch (err) {
        this.retryLater(reason(err));
        return reason(err);
      } finally {
        this.working = false;
      }
      this.unfinished = undefined;
      this.finish(u.a);
      return undefined;
    })().finally(() => (this.retrying = undefined));
    return this.retrying;
  }

  /** Closes the activity: the persisted record goes once its final feedback is acknowledged (if it is done). */
  private finish(a: Activity): void {
    this.active = undefined;
    // Before the end is published: a restart after it must not apply the same desired state again.
    // A record that cannot be written (disk full) must not keep the end from the back end.
    try {
      this.store.markFinished(a);
    } catch (err) {
      this.o.log(`cannot record that activity ${a.activityId} ended in ${this.store.finishedPath} (${reason(err)}): a retained desired state of it would be applied again at the next start`);
    }
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.o.log(`activity ${a.activityId}: ${a.status}${a.message ? ` (${a.message})` : ""}`);
    this.publishEnd(a);
    void this.publishCurrentState(a.activityId);
  }

  /** The final feedback of `a`; its record goes once the broker acknowledges it (if it is done). */
  private publishEnd(a: Activity): void {
    this.endInFlight = a.activityId;
    this.feedback(a.activityId, feedbackOf(a), () => {
      if (this.endInFlight === a.activityId) this.endInFlight = undefined;
      if (a.phase === "done" && this.store.load()?.activityId === a.activityId) this.store.clear();
    });
  }

  /**
   * Publishes again the end of an activity whose record is still `done`: the broker never
   * acknowledged its final feedback (the link dropped first, or the activity ended while the
   * broker was away), and the back end would otherwise see it running for ever.
   */
  private resendEnd(a: Activity): void {
    if (this.endInFlight === a.activityId) return; // sent on this connection, its acknowledgement to come
    this.o.log(`activity ${a.activityId}: the broker did not acknowledge its end (${a.status}): publishing it again`);
    this.publishEnd(a);
  }

  private async publishCurrentState(activityId: string): Promise<void> {
    try {
      const containers = await readContainers(this.engine, this.o.cfg.instance);
      const state = currentState(containers, { instance: this.o.cfg.instance, systemContainers: this.o.cfg.systemContainers, version: this.o.version });
      this.publish(TOPICS.currentState, envelope(activityId, state), { retain: true });
    } catch (err) {
      this.o.log(`cannot read the current state: ${(err as Error).message}`);
    }
  }

  /**
   * Refuses a message. `final`, the digest of a desired state's bytes: its content is at fault
   * (invalid, unusable components or domains, older than the state applied), so the same message
   * is refused the same way at every try: it is recorded, and a retained copy that comes again at
   * every connect is ignored, not refused again (the back end was told once). A desired state
   * refused for the moment (an activity in progress, a rollback to finish, a container of that name
   * someone else owns) is not recorded: it is taken when it comes again, after a restart too.
   * `configured`: the agent config the refusal came from, recorded with it (judged again once it changes).
   */
  private refuse(activityId: string, why: string, final?: string, configured?: JudgedUnder): void {
    this.o.log(`refused ${activityId}: ${why}`);
    if (final) {
      try {
        this.store.markRefused({ activityId, digest: final, ...configured });
      } catch (err) {
        this.o.log(`cannot record that activity ${activityId} was refused in ${this.store.finishedPath} (${reason(err)}): a retained copy of it would be refused again at the next start`);
      }
    }
    this.feedback(activityId, { status: "IDENTIFICATION_FAILED", message: why, actions: [] });
  }

  private async message(topic: string, payload: Buffer): Promise<void> {
    // A retained message cleared by the back end arrives empty: nothing to do.
    if (payload.length === 0) return;
    // A desired state is known by its bytes, which a retained copy repeats exactly.
    const digest = topic === TOPICS.desiredState ? sha256(payload) : undefined;
    const refused = digest && this.store.refusal(digest, { systemContainers: this.o.cfg.systemContainers });
    if (refused) {
      return this.o.log(`ignored desired state ${refused.activityId}: that same message was refused before (its refusal was published then; a retained desired state comes again at every connect): publish a corrected one to apply it`);
    }
    try {
      if (topic === TOPICS.currentStateGet) {
        const m = parseMessage(CurrentStateGetMessage, payload);
        await this.publishCurrentState(m.activityId || `current-state-${Date.now()}`);
      } else if (topic === TOPICS.desiredState) {
        await this.desired(parseMessage(DesiredStateMessage, payload), digest!);
      } else if (topic === TOPICS.command) {
        const m = parseMessage(CommandMessage, payload);
        // One command at a time, in arrival order: the next waits for the phase the last one ran.
        const run = this.commands.then(() => this.command(m));
        this.commands = run.catch(() => {});
        await run;
      }
    } catch (err) {
      if (err instanceof InvalidMessageError) return this.refuse(err.activityId ?? `invalid-message-${Date.now()}`, err.message, digest);
      this.o.log(`cannot handle a message on ${topic}: ${(err as Error).message}`);
    }
  }

  /** `digest`: of the message's bytes, what a refusal for good records. */
  private async desired(m: DesiredStateMessage, digest: string): Promise<void> {
    if (m.activityId === this.active?.activityId) return; // redelivered
    const done = this.store.finished();
    // An activity applied (not one refused: a corrected message may reuse a refused one's id).
    if (this.store.applied(m.activityId, m.timestamp)) {
      return this.o.log(`ignored desired state ${m.activityId}: that activity already ended (its end was published then; a retained desired state comes again at every connect)`);
    }
    if (m.timestamp !== undefined && done?.timestamp !== undefined && m.timestamp < done.timestamp) {
      const when = (t: number) => (Number.isFinite(new Date(t).getTime()) ? new Date(t).toISOString() : String(t));
      // Refused, not ignored: unlike a replay of an activity that ended, the back end never heard of this one.
      return this.refuse(m.activityId, `Cannot start activity ${m.activityId}: its timestamp ${when(m.timestamp)} is older than that of the last desired state applied (${when(done.timestamp)}), so it is not the newest; publish it with a newer timestamp to apply it`, digest);
    }
    const left = this.active ? undefined : this.store.load();
    // Its record is about to be overwritten: its end, not acknowledged yet, goes again first.
    if (left?.phase === "done") this.resendEnd(left);
    if (left && left.phase !== "done") {
      // Not normally reached (a failed rollback stays active): a record left unfinished is finished before anything else.
      this.o.log(`found activity ${left.activityId} unfinished in phase ${left.phase}`);
      this.active = left;
      this.unfinished = { a: left, why: "the apply was interrupted", failures: 0 };
    }
    if (this.unfinished) {
      const u = this.unfinished;
      const failed = await this.finishUnfinished();
      if (failed !== undefined) {
        return this.refuse(
          m.activityId,
          `Cannot start activity ${m.activityId}: the rollback of activity ${u.a.activityId} is not finished (${failed}); the agent retries it and takes a desired state again once it is done: publish this one again then`,
        );
      }
    }
    if (this.active) return this.refuse(m.activityId, `Cannot start activity ${m.activityId}: activity ${this.active.activityId} is in progress`);
    const d = this.deps();
    this.working = true;
    const stamp = m.timestamp !== undefined ? { timestamp: m.timestamp } : {};
    const placeholder: Activity = { activityId: m.activityId, ...stamp, startedAt: new Date().toISOString(), commandFlow: false, phase: "received", status: "IDENTIFYING", actions: [] };
    this.active = placeholder;
    // Persisted before the broker hears of it: an agent killed while identifying still closes the activity on its next start.
    // The file there is not this activity's (it may be an earlier one's end, unacknowledged): it stays.
    if (!this.recorded(placeholder, false)) return;
    this.feedback(m.activityId, feedbackOf(placeholder));
    faultPoint("agent:received"); // kill-point tests (fioup/fault.ts)
    let a: Activity;
    try {
      a = await identify(d, m, { systemContainers: this.o.cfg.systemContainers, commandFlow: this.o.cfg.commandFlow });
    } catch (err) {
      this.working = false;
      this.active = undefined;
      this.store.clear();
      // A clash with what the device has may clear (the other container goes): not refused for good.
      if (err instanceof IdentificationError) return this.refuse(m.activityId, err.message, err.onDevice ? undefined : digest, err.configured);
      return this.refuse(m.activityId, `Cannot identify the changes: ${(err as Error).message}`);
    }
    if (m.timestamp !== undefined) {
      a.timestamp = m.timestamp;
      if (!this.recorded(a, true)) return;
    }
    this.active = a;
    this.changed(a);
    if (a.commandFlow) {
      this.working = false;
      return; // waits for DOWNLOAD
    }
    try {
      await applyAll(d, a);
    } catch (err) {
      await this.unexpected(d, a, err);
    } finally {
      this.working = false;
    }
    if (this.unfinished?.a !== a) this.finish(a);
  }

  /**
   * Writes the record of an activity before any container changes; if it cannot be written (a full
   * disk), the activity is refused, saying why: applied unrecorded, a crash in the middle could not
   * be undone. Refused for the moment, not for good: the same message is taken once there is room.
   * `ours`: the file holds this activity's earlier record, which goes.
   */
  private recorded(a: Activity, ours: boolean): boolean {
    try {
      this.store.save(a);
      return true;
    } catch (err) {
      this.working = false;
      this.active = undefined;
      if (ours) this.store.clear();
      this.refuse(a.activityId, `Cannot start activity ${a.activityId}: cannot write its record ${this.store.path} (${reason(err)})`);
      return false;
    }
  }

  private async command(m: CommandMessage): Promise<void> {
    const a = this.active;
    const cmd: CommandName = m.payload.command;
    if (!a || a.activityId !== m.activityId || !a.commandFlow) {
      // An activity that ended had its end published once: a feedback now would be the back end's
      // latest word on it. Kanto's container update agent, too, logs and ignores a command that
      // matches no operation in progress; one for an id never seen is refused, saying why.
      if (this.store.ended(m.activityId)) {
        return this.o.log(`ignored command ${cmd} for activity ${m.activityId}: that activity already ended (its end was published then)`);
      }
      return this.refuse(m.activityId, `Cannot run ${cmd}: no activity ${m.activityId} is waiting for commands`);
    }
    const expected: Record<CommandName, string[]> = {
      DOWNLOAD: ["identified"],
      UPDATE: ["downloaded"],
      ACTIVATE: ["updated"],
      CLEANUP: ["activated"],
      ROLLBACK: ["identified", "downloaded", "updated", "activated"],
    };
    if (this.working || !expected[cmd].includes(a.phase)) {
      a.message = `Cannot run ${cmd} in phase ${a.phase}`;
      this.changed(a);
      return;
    }
    delete a.message;
    const d = this.deps();
    this.working = true;
    try {
      if (cmd === "DOWNLOAD") await download(d, a);
      else if (cmd === "UPDATE") await update(d, a);
      else if (cmd === "ACTIVATE") await activate(d, a);
      else if (cmd === "CLEANUP") await cleanup(d, a);
      else await rollback(d, a, "rolled back on command");
      if (a.phase !== "done") this.changed(a);
    } catch (err) {
      if (!(err instanceof ApplyFailedError)) await this.unexpected(d, a, err);
      else if (cmd === "DOWNLOAD") {
        a.status = "INCOMPLETE";
        a.message = `${err.message}; nothing was changed`;
        a.phase = "done";
        try {
          this.store.save(a);
        } catch (err) {
          // Nothing changed on the device: its end is still told (a restart before it is acknowledged closes it INCOMPLETE too).
          this.o.log(`cannot record the end of activity ${a.activityId} in ${this.store.path}: ${reason(err)}`);
        }
      } else await this.rollbackOrRetry(d, a, err.message);
    } finally {
      this.working = false;
    }
    if (a.phase === "done") this.finish(a);
  }
}
