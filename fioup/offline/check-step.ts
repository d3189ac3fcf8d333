/**
 * The check step of an offline update: two cheap looks that commit nothing (the bundle's
 * index.json names this device's hardware id; its root of the device's trusted root version is
 * that root, else it comes from another gateway), then the TUF workflow on the bundle's metadata
 * against the device's trusted root (the same verifier, rollback and expiry checks as online; an expiry
 * grace only when `fioup.offline_expiry_grace_seconds` says so), then the online selection rules
 * applied to the one target the bundle was made for (hardware id, tags, no downgrade, bad
 * targets skipped). From there the update is an ordinary one whose content comes from the
 * bundle: the same steps, rollback and events.
 *
 * The workflow runs on a scratch copy of the device's trusted folder, and what it verified
 * replaces the trusted files only once the bundle's target is taken. Online, the newest metadata
 * is the gateway's and the device takes it at every check; a bundle's is only as new as its
 * export, so metadata taken from a bundle the device then refuses (its target for other tags, not
 * newer than the running one, marked bad) would refuse every good bundle exported before it as a rollback.
 *
 * @module
 */
import { cp, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { makeOwnedFolder, removeDeadFolders } from "../../lib/fs/owned-folder.ts";
import { clockReading, SET_THE_CLOCK } from "../../lib/net/why.ts";
import { bundleMetadataFetch, bundleRegistries, BUNDLE_METADATA_BASE_URL, BUNDLE_TUF_DIR, type Bundle } from "../../lib/bundle/index.ts";
import { TargetNotFoundError } from "../../lib/api/target.ts";
import { canonicalJson, ExpiredMetadataError, isBadTarget, selectTarget, targetMatchesDevice, TufVerificationError, verifyAndLoadTargets } from "../../lib/tuf/index.ts";
import { createUpdate, NoUpdateError } from "../update/check-step.ts";
import { useBundle, type UpdateContext } from "../update/context.ts";
import { currentTarget } from "../update/current-target.ts";
import { InvalidStateError } from "../update/states.ts";
import type { Step } from "../update/step.ts";

/** The check's scratch folder in the storage dir, beside the trusted one, and the lock naming its owner (lib/fs/owned-folder.ts). */
const SCRATCH_PREFIX = "offline-check-";
const OWNER_LOCK = ".owner.lock";
/** The files the TUF client keeps in the trusted folder, root first: what a bundle taken puts there. */
const TRUSTED_FILES = ["root.json", "timestamp.json", "snapshot.json", "targets.json"];

/** A scratch copy of the device's trusted folder: verified into, then taken or dropped. */
interface ScratchTrust {
  /** The copy, where the bundle's metadata is verified. */
  tuf: string;
  /** Puts the verified files into the device's trusted folder, each replaced atomically. */
  take(): Promise<void>;
  /** Removes the scratch folder. */
  remove(): Promise<void>;
}

/** Copies the trusted folder of `storagePath` into a scratch folder beside it (what a killed check left there removed first). */
async function scratchTrust(storagePath: string): Promise<ScratchTrust> {
  const trusted = join(storagePath, "tuf");
  await removeDeadFolders(storagePath, SCRATCH_PREFIX, OWNER_LOCK);
  const work = await makeOwnedFolder(storagePath, SCRATCH_PREFIX, OWNER_LOCK);
  const tuf = join(work, "tuf");
  const remove = () => rm(work, { recursive: true, force: true });
  // No trusted folder: the verifier says there is no trusted root (named as the trusted folder, below).
  await cp(trusted, tuf, { recursive: true }).catch(async (e) => {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    await remove();
    throw e;
  });
  return {
    tuf,
    remove,
    async take() {
      for (const name of TRUSTED_FILES) {
        const file = Bun.file(join(tuf, name));
        if (await file.exists()) await writeFileAtomic(join(trusted, name), await file.bytes());
      }
    },
  };
}

/**
 * Verifies the bundle's metadata into the scratch copy `trust` of the device's trusted folder;
 * returns the verified targets. Expired metadata is said with its expiry and the two ways
 * forward: a bundle kept on a shelf longer than the gateway's timestamps live is the usual case
 * offline, not an attack.
 */
async function verifiedTargets(ctx: UpdateContext, bundle: Bundle, trust: ScratchTrust) {
  try {
    return await verifyAndLoadTargets({
      metadataDir: trust.tuf,
      metadataBaseUrl: BUNDLE_METADATA_BASE_URL,
      fetch: bundleMetadataFetch(bundle.dir),
      expiryGraceSeconds: ctx.cfg.offlineExpiryGraceSeconds,
    });
  } catch (err) {
    // A trusted root missing or unreadable is the device's folder's, not the scratch copy's (removed by then).
    if (err instanceof Error) err.message = err.message.replaceAll(trust.tuf, join(ctx.cfg.storagePath, "tuf"));
    if (!(err instanceof ExpiredMetadataError)) throw err;
    const file = err.file ?? "metadata";
    const expires = await Bun.file(join(bundle.dir, BUNDLE_TUF_DIR, file))
      .json()
      .then((d: { signed?: { expires?: unknown } }) => (typeof d.signed?.expires === "string" ? d.signed.expires : undefined))
      .catch(() => undefined);
    const grace = ctx.cfg.offlineExpiryGraceSeconds;
    throw new ExpiredMetadataError(
      err.file,
      `the bundle's copy expired${expires ? ` at ${expires}` : ""} by this machine's clock, which reads ${clockReading()}` +
        `${grace ? `, more than fioup.offline_expiry_grace_seconds (${grace} s) ago` : ""}: ` +
        `if that is not the time, ${SET_THE_CLOCK}; else ` +
        "export a new bundle (gateway export), or let this device take metadata that expired a while ago with fioup.offline_expiry_grace_seconds in a drop-in (docs/offline.md)",
    );
  }
}

/** The bundle's metadata is another gateway's (another factory's root): said plainly, not as a signature failure (exit 30). */
export class ForeignBundleError extends TufVerificationError {
  override name = "ForeignBundleError";
  constructor(dir: string, rootVersion: number) {
    super(`${rootVersion}.root.json`, "");
    this.message =
      `Cannot apply the bundle ${dir}: it comes from another gateway (another factory): its ${BUNDLE_TUF_DIR}/${rootVersion}.root.json is not ` +
      `the root version ${rootVersion} this device trusts; nothing of it was taken: export the bundle from the gateway this device is registered with`;
  }
}

/** The `signed` part of a TUF file, as canonical JSON; undefined if it cannot be read. */
const signedOf = (path: string): Promise<{ version?: unknown; text: string } | undefined> =>
  Bun.file(path)
    .json()
    .then((d: { signed?: { version?: unknown } }) => (d.signed ? { version: d.signed.version, text: canonicalJson(d.signed) } : undefined))
    .catch(() => undefined);

/**
 * Refuses a bundle whose root of the device's trusted root version differs from that root: it
 * was made by another gateway, whose keys would fail every signature. Read before the TUF
 * workflow, so the refusal says so and commits nothing; anything unreadable is left to the workflow.
 */
async function refuseForeignRoot(ctx: UpdateContext, bundle: Bundle): Promise<void> {
  const trusted = await signedOf(join(ctx.cfg.storagePath, "tuf", "root.json"));
  if (typeof trusted?.version !== "number") return;
  const theirs = await signedOf(join(bundle.dir, BUNDLE_TUF_DIR, `${trusted.version}.root.json`));
  if (theirs && theirs.text !== trusted.text) throw new ForeignBundleError(bundle.dir, trusted.version);
}

/**
 * Why the verified targets lack the bundle's target. A gateway shows each device its own signed
 * view of the targets (docs/signed-views.md): a rollout hides its version from the devices it has
 * not released it to, and a device that already trusts its view at that version keeps it, though
 * the bundle's copy (the main chain, as export reads it) lists the target.
 */
async function missingTargetWhy(bundle: Bundle, want: string, version: number): Promise<string> {
  const file = bundle.index.bundle.tuf.find((f) => /^(?:\d+\.)?targets\.json$/.test(f));
  const copy = file ? await Bun.file(join(bundle.dir, BUNDLE_TUF_DIR, file)).json().catch(() => undefined) : undefined;
  const listed = (copy as { signed?: { targets?: Record<string, unknown> } } | undefined)?.signed?.targets?.[want] !== undefined;
  if (!listed) return `its signed targets.json (version ${version}) has no target ${want}`;
  return (
    `the device's own signed view of the targets (from its gateway, targets.json version ${version}, which the device trusts already) does not offer ${want}, ` +
    `though the bundle's ${BUNDLE_TUF_DIR}/${file} lists it: a rollout on the gateway holds that version back from this device ` +
    "(docs/offline.md, \"Rollouts and signed views\"); export a bundle once the rollout has released it to this device, or of a newer version"
  );
}

/** The check step for `bundle` (it also makes the later steps read from the bundle). */
export function offlineCheckStep(bundle: Bundle): Step {
  return {
    name: "check",
    async run(ctx) {
      useBundle(ctx, bundle, bundleRegistries(bundle));
      const want = bundle.index.bundle.target;
      // Before the resume below too: another gateway's bundle may name the same target.
      await refuseForeignRoot(ctx, bundle);
      const pending = ctx.db.pendingUpdate();
      if (pending) {
        // An interrupted update finishes first, from this bundle only if it is for the same target.
        if (pending.toTarget !== want) throw new InvalidStateError(`apply the bundle for ${want}: an update to ${pending.toTarget} is in progress`, pending.state);
        ctx.updateId = pending.id;
        return;
      }
      const hwid = ctx.cfg.hardwareId;
      if (!hwid) throw new TargetNotFoundError("Cannot select a target: provision.primary_ecu_hardware_id is not set");
      // index.json is not trusted, but a bundle it says is for other devices is refused at once,
      // in words that say so. The signed check below still decides for a bundle that claims this hardware id.
      if (bundle.index.bundle.hwid !== hwid) {
        throw new TargetNotFoundError(`Cannot apply the bundle ${bundle.dir}: it was exported for hardware id ${bundle.index.bundle.hwid} (its index.json), this device is ${hwid}; nothing of it was taken (export one with --hwid ${hwid})`);
      }
      const trust = await scratchTrust(ctx.cfg.storagePath);
      try {
        const verified = await verifiedTargets(ctx, bundle, trust);
        const entry = verified.targets[want];
        if (!entry) throw new TargetNotFoundError(`Cannot apply the bundle ${bundle.dir}: ${await missingTargetWhy(bundle, want, verified.version)}`);
        if (!targetMatchesDevice(entry, hwid, ctx.cfg.tags)) {
          throw new TargetNotFoundError(`Cannot apply the bundle ${bundle.dir}: ${want} is not for hardware id ${hwid} and tags ${ctx.cfg.tags.join(",") || "(any)"}`);
        }
        const current = currentTarget(ctx.cfg, ctx.db);
        // The online rules, restricted to the bundle's target: never older, never a bad one.
        const bad = ctx.db.badTargetMarks();
        const selected = selectTarget({ [want]: entry }, { hwid, tags: ctx.cfg.tags, currentVersion: current?.entry.custom.version, badTargets: bad });
        if (!selected || selected.name === current?.name) {
          const why = selected ? "the device runs it already" : isBadTarget(bad, want, entry) ? "the device marked it bad (it failed before)" : "it is older than the running target";
          throw new NoUpdateError(`No update in the bundle: ${want} (version ${entry.custom.version}): ${why}${current ? `; running ${current.name}` : ""}`);
        }
        // Taken: its metadata becomes the device's, as after an online check (the module comment says why only now).
        await trust.take();
        ctx.updateId = createUpdate(ctx, selected, false);
      } finally {
        await trust.remove();
      }
    },
  };
}
