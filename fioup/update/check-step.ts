/**
 * The check step: refresh TUF, pick the target, and create the update row (or
 * resume the one a killed run left behind). Creating the row is the commit
 * point: from here the update survives restarts.
 *
 * @module
 */
import type { Target } from "../../lib/api/index.ts";
import { ulid } from "../ulid.ts";
import type { UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import type { Step } from "./step.ts";
import { checkTargets, type CheckResult } from "./tuf-check.ts";
import { currentTarget } from "./current-target.ts";
import { InvalidStateError } from "./states.ts";

export class NoUpdateError extends Error {
  override name = "NoUpdateError";
}

export class NoUpdateInProgressError extends Error {
  override name = "NoUpdateInProgressError";
  constructor(action: string) {
    // Fetching first is the way on for install and start; for cancel it would make something to cancel.
    super(`Cannot ${action}: no update in progress${action === "cancel" ? " (nothing to cancel)" : "; run 'fioup fetch' or 'fioup update' first"}`);
  }
}

export interface CheckStepOptions {
  /** A named version (may downgrade, may retry a bad target). */
  version?: string;
  /** Set when the check is done: the TUF result (for the command's output). */
  onResult?(r: CheckResult): void;
}

/** Creates the update for `target`; its first events are queued with the row. */
export function createUpdate(ctx: UpdateContext, target: Target, explicit: boolean): string {
  const id = ulid();
  const from = currentTarget(ctx.cfg, ctx.db);
  // An update from an offline bundle says so, so the server can tell it from one it served.
  const details = ctx.bundle ? { details: { source: "offline-bundle", bundle: ctx.bundle.id } } : {};
  // One transaction: a row saved without its event would resume (pendingUpdate) never sending it.
  ctx.db.transaction(() => {
    const row = ctx.db.createUpdate({ id, fromTarget: from?.name ?? null, target, explicit });
    ctx.db.enqueueEvents([eventFor(row, "MetadataUpdateCompleted", { success: true, ...details })]);
  });
  const unknown = shortlistNotIn(ctx.cfg.shortlist, target);
  if (unknown) ctx.hooks.onInfo?.(unknown);
  return id;
}

/**
 * The apps shortlist's names the target has no app of (a typo in `register --apps`, or an app
 * the factory dropped), said at each update, and by `fioup check` and `fioup register` where they
 * know the target: else the device runs fewer apps, or none, in silence, and reports success.
 */
export function shortlistNotIn(shortlist: readonly string[] | undefined, target: Target): string | undefined {
  const apps = Object.keys(target.entry.custom.docker_compose_apps).sort();
  const missing = (shortlist ?? []).filter((n) => !apps.includes(n));
  if (!missing.length) return undefined;
  const none = shortlist!.every((n) => missing.includes(n));
  return `Warning: the apps shortlist names ${missing.map((n) => `"${n}"`).join(", ")}, which ${target.name} does not have (its apps: ${apps.join(", ") || "none"})` +
    (none ? `: this device will run none of its apps` : "") +
    `; set the shortlist with 'fioup register --force --apps ...' or pacman.compose_apps in sota.toml`;
}

export function checkStep(opts: CheckStepOptions = {}): Step {
  return {
    name: "check",
    async run(ctx) {
      const pending = ctx.db.pendingUpdate();
      if (pending) {
        // A run was interrupted: finish that one first (a different named version is refused).
        if (opts.version !== undefined && pending.version !== opts.version) {
          throw new InvalidStateError(`start an update to version ${opts.version}`, pending.state, `an update to ${pending.toTarget} (version ${pending.version})`);
        }
        ctx.updateId = pending.id;
        return;
      }
      if (!ctx.client) throw new Error("Cannot check for updates: no gateway client");
      const current = currentTarget(ctx.cfg, ctx.db);
      const r = await checkTargets(ctx.cfg, ctx.client, { current, badTargets: ctx.db.badTargetMarks(), version: opts.version });
      opts.onResult?.(r);
      if (!r.selected || (!r.updateAvailable && opts.version === undefined)) {
        throw new NoUpdateError(
          current ? `No update available: running ${current.name} (version ${current.entry.custom.version})` : "No update available",
        );
      }
      ctx.updateId = createUpdate(ctx, r.selected, opts.version !== undefined);
    },
  };
}

/** For install/start/cancel: select the pending update or throw. */
export function pendingStep(action: string): Step {
  return {
    name: "resume",
    async run(ctx) {
      const pending = ctx.db.pendingUpdate();
      if (!pending) throw new NoUpdateInProgressError(action);
      ctx.updateId = pending.id;
    },
  };
}
