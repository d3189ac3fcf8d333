/**
 * The rollouts as the admin API and the gateway use them: create, pause, resume, advance, cancel
 * and show (gateway/admin/rollouts.ts validates and calls these), each device's view for the
 * signed metadata, and the tick that moves rollouts on by themselves (engine.ts), run only on the
 * replica that holds the signer lease.
 *
 * Every transition is committed first and then followed by new signed metadata versions, which
 * need the TUF targets key. While that key is offline (docs/keys.md), an action that would show
 * the version to more devices (create, resume, advance; the tick's advance and completion) is
 * refused or waits, before anything is committed; one that withholds it (pause, cancel, the
 * tick's halt) is committed, since an operator must be able to stop a bad rollout, and its new
 * versions are signed by the tick once the key is back (#signPending): no publish is needed.
 *
 * @module
 */
import { isTargetVersion } from "../../lib/api/target.ts";
import { ROLLOUT_LIST_MAX, type RolloutDetail, type RolloutEventKind, type RolloutRequest } from "../../lib/api/admin.ts";
import { parseWindow, WindowSpecError } from "../../lib/schedule/window.ts";
import { InvalidDurationError, parseDuration } from "../../lib/api/duration.ts";
import type { RolloutService, TufService } from "../env.ts";
import type { RolloutGauge } from "../metrics.ts";
import { groupAudience } from "../fleet/query.ts";
import type { RolloutPatch, RolloutRow, Store } from "../store/types.ts";
import { RolloutEngine, tally, waveStartedReason, wavesLabel } from "./engine.ts";
import { waveStarts } from "./evaluate.ts";
import { SigningKeyUnavailableError } from "../ota/key-store.ts";
import { InvalidRolloutError, RolloutNotFoundError, RolloutStateError, TargetsKeyOfflineError } from "./errors.ts";
import { assignWaves, checkWaves } from "./membership.ts";
import { ROLLOUT_DEFAULTS, checkTargetVersion, checkTimes } from "./settings.ts";
import { RolloutViews } from "./view-cache.ts";
import type { View } from "./view.ts";

/** What a target version may be: targets' custom.version (digits). */

export interface RolloutsOptions {
  store: Store;
  tuf: Pick<TufService, "targets"> & Partial<Pick<TufService, "bumpViews" | "signing">>;
  /** Whether this replica runs the tick (the signer lease holder). Default: always. */
  isLeader?: () => boolean;
  /** Tick interval (default 5000 ms; 0: no timer, call tick() yourself). */
  tickMs?: number;
  /**
   * How often to reload the views in the background (default 0: never). Off by default: views
   * reload when a new timestamp version appears (the signed-views routes call refreshViews()),
   * and a reload between versions would change a device's view under the version it is fetching.
   */
  viewPollMs?: number;
  counted?: (kind: RolloutEventKind) => void;
  log?: (line: string) => void;
  /** The clock (tests move it to pass soak and health windows). */
  now?: () => number;
}

/** Short, sortable ids: 10 characters of time (ms, Crockford base32) and 6 random ones. */
export function newRolloutId(now: number): string {
  const abc = "0123456789abcdefghjkmnpqrstvwxyz";
  let t = "";
  for (let n = now, i = 0; i < 10; i++, n = Math.floor(n / 32)) t = abc[n % 32] + t;
  const rnd = crypto.getRandomValues(new Uint8Array(6));
  return t + Array.from(rnd, (b) => abc[b % 32]).join("");
}

function seconds(name: string, value: string | number | undefined, fallback: number | null): number | null {
  if (value === undefined) return fallback;
  try {
    return parseDuration(value);
  } catch (e) {
    if (e instanceof InvalidDurationError) throw new InvalidRolloutError(`Invalid ${name}: ${e.message}`);
    throw e;
  }
}

type Action = { patch: RolloutPatch; events: { kind: RolloutEventKind; wave: number | null; reason: string }[] };

export class Rollouts implements RolloutService {
  readonly views: RolloutViews;
  readonly engine: RolloutEngine;
  readonly #now: () => number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #ticking: Promise<unknown> | undefined;
  #lastTick = { end: 0, took: 0 };
  /** Transitions committed on this replica, counted; the newest of them whose metadata versions are not signed yet (0: none). */
  #committed = 0;
  #unsigned = 0;
  #signing: Promise<unknown> | undefined;

  constructor(private readonly opts: RolloutsOptions) {
    this.#now = opts.now ?? Date.now;
    this.views = new RolloutViews(opts.store, { pollMs: opts.viewPollMs ?? 0, onError: (e) => opts.log?.(`rollouts: cannot reload views: ${(e as Error).message}`) });
    this.engine = new RolloutEngine({
      store: opts.store,
      targets: () => opts.tuf.targets(),
      changed: () => this.#changed(),
      canRelease: () => this.#canRelease(),
      ...(opts.counted ? { counted: opts.counted } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      now: this.#now,
    });
  }

  /** Loads the views and starts the tick (it acts only while isLeader()). */
  async start(): Promise<this> {
    await this.views.start();
    // Started with the targets key offline, this replica cannot tell whether a change committed
    // before (by it, before a restart) still waits for its metadata versions: it signs once when
    // the key is back, if any rollout gates devices, so the advice "put the key back" holds.
    if (this.views.active.length > 0 && !(await this.#canRelease().catch(() => false))) this.#unsigned = ++this.#committed;
    const every = this.opts.tickMs ?? 5000;
    if (every > 0) {
      // A tick over a huge pending wave can take a while: leave at least 4 times its length between ticks.
      this.#timer = setInterval(() => {
        if (performance.now() - this.#lastTick.end >= 4 * this.#lastTick.took) void this.tick();
      }, every);
      this.#timer.unref?.();
    }
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.views.stop();
    await this.#ticking;
  }

  /**
   * Signs the metadata versions of transitions committed here that could not be signed yet (any
   * replica: the one that committed them knows), then one engine pass if this replica leads (never
   * two at once); errors are logged, not thrown.
   */
  tick(): Promise<unknown> {
    if (this.opts.isLeader && !this.opts.isLeader()) return this.#signPending();
    if (!this.#ticking) {
      const started = performance.now(); // monotonic: a wall-clock step back must not stop the ticks
      this.#ticking = this.#signPending()
        .then(() => this.engine.tick())
        .catch((e) => this.opts.log?.(`rollouts: tick failed: ${(e as Error).message}`))
        .finally(() => {
          this.#ticking = undefined;
          const end = performance.now();
          this.#lastTick = { end, took: end - started };
        });
    }
    return this.#ticking;
  }

  /**
   * After any transition (already committed): new metadata versions first, then this replica's
   * views. Views change only at a new timestamp version (this one, or one the signed-views routes
   * see and reload for): a view swapped under a version a device is still fetching would serve it
   * a targets.json its snapshot did not pin.
   *
   * The versions need the targets key. When they cannot be signed (the key is offline), the
   * transition stays committed and this replica's views stay as they are (a device that trusts
   * the current versions would never look at a view changed under them); every tick tries again
   * (#signPending), and the first versions signed cover every transition committed before them.
   * Returns why the versions are not signed yet, for the action's answer (undefined: signed).
   */
  #changed(): Promise<string | undefined> {
    this.#committed++;
    return this.#sign();
  }

  async #sign(): Promise<string | undefined> {
    const covers = this.#committed;
    try {
      await this.opts.tuf.bumpViews?.();
    } catch (e) {
      const why = unsignedWhy(e);
      if (!this.#unsigned) this.opts.log?.(`rollouts: ${why}`);
      this.#unsigned = Math.max(this.#unsigned, covers);
      return why;
    }
    if (this.#unsigned && this.#unsigned <= covers) {
      this.#unsigned = 0;
      this.opts.log?.("rollouts: signed the metadata versions that rollout changes waited for: devices see them at their next check");
    }
    await this.views.refresh();
    return undefined;
  }

  /** A tick's first job: the versions of transitions committed here that could not be signed (one attempt at a time). */
  #signPending(): Promise<unknown> {
    if (!this.#unsigned) return Promise.resolve();
    this.#signing ??= this.#sign()
      .catch((e) => this.opts.log?.(`rollouts: cannot reload views: ${(e as Error).message}`))
      .finally(() => (this.#signing = undefined));
    return this.#signing;
  }

  /**
   * Whether new targets metadata can be signed now (the gateway holds the targets key: it looks in
   * its keys dir each time). Asked before anything that shows the version to more devices is
   * committed: such an action is refused, and the tick's advance or completion waits, while the
   * key is offline.
   */
  async #canRelease(): Promise<boolean> {
    return (await this.opts.tuf.signing?.("targets"))?.held ?? true;
  }

  /** @throws {TargetsKeyOfflineError} The targets key is offline: `action` is refused, nothing committed. */
  async #mayRelease(action: string): Promise<void> {
    if (!(await this.#canRelease())) throw new TargetsKeyOfflineError(action);
  }

  /** The answer to an action whose metadata versions are not signed yet says so: its devices are told later. */
  async #answer(id: string, unsigned: string | undefined): Promise<RolloutDetail> {
    const detail = (await this.show(id))!;
    if (!unsigned) return detail;
    return { ...detail, reason: `${detail.reason ?? "changed"}; ${unsigned}` };
  }

  /** Per active rollout: its wave (1-based) and members by status (for /metrics). */
  async gauges(): Promise<RolloutGauge[]> {
    const { store } = this.opts;
    return Promise.all(
      (await store.activeRollouts()).map(async (r) => {
        const devices = { pending: 0, succeeded: 0, failed: 0 };
        for (const c of await store.rolloutCounts(r.id)) devices[c.status] += c.devices;
        return { rollout: r.id, wave: r.wave + 1, devices };
      }),
    );
  }

  view(uuid: string): View {
    return this.views.rolloutView(uuid);
  }

  refreshViews(): Promise<void> {
    return this.views.refresh();
  }

  async create(req: RolloutRequest): Promise<RolloutDetail> {
    const { store } = this.opts;
    if (!isTargetVersion(req.target)) throw new InvalidRolloutError(`Invalid target "${req.target}": give the target version (custom.version, digits)`);
    checkTargetVersion(req.target);
    if ((req.group === undefined) === (req.tag === undefined)) throw new InvalidRolloutError("Give exactly one of group or tag");
    checkWaves(req.waves);
    if (req.window !== undefined) {
      try {
        parseWindow(req.window);
      } catch (e) {
        if (e instanceof WindowSpecError) throw new InvalidRolloutError(e.message);
        throw e;
      }
    }
    const soakS = seconds("soak", req.soak, ROLLOUT_DEFAULTS.soakS)!;
    const healthWindowS = seconds("health window", req.healthWindow, ROLLOUT_DEFAULTS.healthWindowS)!;
    const pendingTimeoutS = seconds("pending timeout", req.pendingTimeout, ROLLOUT_DEFAULTS.pendingTimeoutS)!;
    const maxHoldS = seconds("max hold", req.maxHold, null);
    checkTimes(healthWindowS, pendingTimeoutS);
    let audience: string[];
    if (req.group !== undefined) {
      const group = await store.getGroup(req.group);
      if (!group) throw new InvalidRolloutError(`Unknown group "${req.group}"`);
      audience = await groupAudience(store, group);
    } else {
      audience = await store.queryDevices({ tags: [req.tag!] });
    }
    if (audience.length === 0) throw new InvalidRolloutError(`No devices in ${req.group !== undefined ? `group "${req.group}"` : `tag "${req.tag}"`}: nothing to roll out to`);
    const members = assignWaves(audience, req.waves, req.first ?? []);
    await this.#mayRelease(`create a rollout of version ${req.target}`);
    const now = this.#now();
    const at = new Date(now).toISOString();
    const row: RolloutRow = {
      id: newRolloutId(now),
      targetVersion: req.target,
      groupName: req.group ?? null,
      tag: req.tag ?? null,
      waves: req.waves,
      soakS,
      maxFailuresPct: req.maxFailures ?? ROLLOUT_DEFAULTS.maxFailuresPct,
      healthWindowS,
      pendingTimeoutS,
      installWindow: req.window ?? null,
      maxHoldS,
      rollbackOnHalt: req.rollbackOnHalt ?? false,
      state: "running",
      wave: 0,
      waveStartedAt: at,
      waveStarts: [at],
      reason: null,
      acknowledgedFailures: 0,
      revision: 1,
      createdAt: at,
      updatedAt: at,
    };
    const counts = members.reduce<Map<number, number>>((m, x) => m.set(x.wave, (m.get(x.wave) ?? 0) + 1), new Map());
    const countRows = [...counts].map(([wave, devices]) => ({ wave, status: "pending" as const, devices }));
    const audienceName = req.group !== undefined ? `group "${req.group}"` : `tag "${req.tag}"`;
    await store.createRollout(row, members, [
      { rolloutId: row.id, at, kind: "created", wave: null, deviceUuid: null, reason: `version ${row.targetVersion} to ${members.length} devices of ${audienceName} in waves ${row.waves.map((w) => `${w}%`).join(",")}` },
      { rolloutId: row.id, at, kind: "wave-started", wave: 0, deviceUuid: null, reason: waveStartedReason(countRows, 0, row.waves[0]!) },
    ]);
    this.opts.counted?.("created");
    this.opts.counted?.("wave-started");
    return this.#answer(row.id, await this.#changed());
  }

  async show(id: string): Promise<RolloutDetail | undefined> {
    const { store } = this.opts;
    const row = await store.getRollout(id);
    if (!row) return undefined;
    // Transitions and device events apart: 100,000 device verdicts must not bury the transitions.
    // One more than listed is read, to say whether there are more (failures: counts says how many).
    const [counts, held, failures, waits, transitions, deviceEvents] = await Promise.all([
      store.rolloutCounts(id),
      store.rolloutDeviceStates(id, { held: true, limit: ROLLOUT_LIST_MAX + 1 }),
      store.rolloutDeviceStates(id, { status: "failed", limit: ROLLOUT_LIST_MAX }),
      store.rolloutDeviceStates(id, { waiting: true, limit: ROLLOUT_LIST_MAX + 1 }),
      store.listRolloutEvents(id, { limit: 50, device: false }),
      store.listRolloutEvents(id, { limit: 50, device: true }),
    ]);
    const events = [...transitions, ...deviceEvents].sort((a, b) => b.id - a.id);
    // A cancelled rollout offers its version to nobody any more: no install is deferred, nobody waits for it.
    if (row.state === "cancelled")
      return { ...row, counts, holds: [], moreHolds: false, heldDevices: 0, failures, waiting: [], moreWaiting: false, waitingDevices: 0, events };
    // A list cut at ROLLOUT_LIST_MAX says of how many: counted only then.
    const [heldDevices, waitingDevices] = await Promise.all([
      held.length > ROLLOUT_LIST_MAX ? store.countRolloutDevices(id, { held: true }) : held.length,
      waits.length > ROLLOUT_LIST_MAX ? store.countRolloutDevices(id, { waiting: true }) : waits.length,
    ]);
    return {
      ...row, counts, failures, events,
      holds: held.slice(0, ROLLOUT_LIST_MAX), moreHolds: held.length > ROLLOUT_LIST_MAX, heldDevices,
      waiting: waits.slice(0, ROLLOUT_LIST_MAX), moreWaiting: waits.length > ROLLOUT_LIST_MAX, waitingDevices,
    };
  }

  /** Applies an operator's action with the rollout's revision, retrying when the tick moved it meanwhile. */
  async #act(
    id: string,
    decide: (r: RolloutRow) => Action | Promise<Action>,
  ): Promise<RolloutDetail> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await this.opts.store.getRollout(id);
      if (!r) throw new RolloutNotFoundError(id);
      const { patch, events } = await decide(r);
      if (await this.engine.transition(r, patch, events)) return this.#answer(id, await this.#changed());
    }
    throw new RolloutStateError(`Rollout "${id}" keeps changing: try again`);
  }

  pause(id: string): Promise<RolloutDetail> {
    return this.#act(id, (r) => {
      if (r.state !== "running") throw new RolloutStateError(`Cannot pause rollout "${id}": it is ${r.state}`);
      const reason = `paused by an operator in ${wavesLabel(r.wave)}`;
      return { patch: { state: "paused", reason }, events: [{ kind: "paused", wave: r.wave, reason }] };
    });
  }

  resume(id: string): Promise<RolloutDetail> {
    return this.#act(id, async (r) => {
      if (r.state !== "paused" && r.state !== "halted") throw new RolloutStateError(`Cannot resume rollout "${id}": it is ${r.state}`);
      await this.#mayRelease(`resume rollout "${id}"`);
      // The wave's clock starts again: its soak, and the pending timeout of devices it kept waiting (every released wave's).
      const now = new Date(this.#now()).toISOString();
      const patch: RolloutPatch = { state: "running", waveStartedAt: now, waveStarts: waveStarts(r).map(() => now) };
      let reason = `resumed by an operator from ${r.state}`;
      if (r.state === "halted") {
        // The failures that halted it are accepted: only new ones count against the limit. Written
        // only if still that many (ifFailed): the tick records failures while halted without moving
        // the revision, and one recorded meanwhile must be accepted and named too (#act counts again).
        const failed = tally(await this.opts.store.rolloutCounts(id), r.waves.length).failed;
        patch.acknowledgedFailures = failed;
        patch.ifFailed = failed;
        reason += `; the ${failed === 1 ? "1 failure so far is" : `${failed} failures so far are`} accepted, new ones count against the limit`;
      }
      // Kept as the rollout's reason: `show` then says which failures no longer count, until the next transition.
      patch.reason = reason;
      return { patch, events: [{ kind: "resumed", wave: r.wave, reason }] };
    });
  }

  advance(id: string, fromWave?: number): Promise<RolloutDetail> {
    // The wave the operator advances from is the one they saw (`fromWave`, a form's or a script's),
    // else the one first read: should #act read again after a conflict, a wave that moved meanwhile
    // (the tick's advance, or the same request sent twice) is not advanced from, or two waves would
    // be released at once, the later without soak or settling.
    let from = fromWave === undefined ? undefined : fromWave - 1;
    return this.#act(id, async (r) => {
      if (from !== undefined && r.wave !== from)
        throw new RolloutStateError(`Cannot advance rollout "${id}" from wave ${from + 1}: it is at wave ${r.wave + 1} by now (advanced meanwhile; nothing was done)`);
      from = r.wave;
      if (r.state !== "running" && r.state !== "paused") throw new RolloutStateError(`Cannot advance rollout "${id}": it is ${r.state}${r.state === "halted" ? " (resume it first)" : ""}`);
      if (r.wave >= r.waves.length - 1) throw new RolloutStateError(`Cannot advance rollout "${id}": wave ${r.wave + 1} is its last`);
      await this.#mayRelease(`advance rollout "${id}"`);
      const next = r.wave + 1;
      const now = new Date(this.#now()).toISOString();
      // Advancing does not resume: say so, or a paused rollout showing "advanced" looks like it moves on.
      const reason = `advanced by an operator to wave ${next + 1}${r.state === "paused" ? "; still paused (resume it to go on)" : ""}`;
      return {
        // The released waves keep their starts: their devices' pending timeouts run on.
        patch: { wave: next, waveStartedAt: now, waveStarts: [...waveStarts(r), now], reason },
        events: [{ kind: "wave-advanced", wave: r.wave, reason }, { kind: "wave-started", wave: next, reason: `wave ${next + 1} released by an operator` }],
      };
    });
  }

  cancel(id: string): Promise<RolloutDetail> {
    return this.#act(id, (r) => {
      if (r.state === "completed" || r.state === "cancelled") throw new RolloutStateError(`Cannot cancel rollout "${id}": it is ${r.state}`);
      const reason = `cancelled by an operator in ${wavesLabel(r.wave)}`;
      return { patch: { state: "cancelled", reason }, events: [{ kind: "cancelled", wave: r.wave, reason }] };
    });
  }
}


/** Why a transition's metadata versions are not signed yet, as its answer and the log say it. */
function unsignedWhy(e: unknown): string {
  if (e instanceof SigningKeyUnavailableError && e.role === "targets")
    return "the TUF targets key is offline, so the devices are told once it is back in the gateway's tuf/keys/ (docs/keys.md), within seconds, without a publish";
  return `the devices are told once new signed metadata can be made (tried again every few seconds): ${(e as Error).message}`;
}
