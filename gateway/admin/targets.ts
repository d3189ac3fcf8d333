/**
 * /admin/targets: read, add/replace (one signed version, all or nothing) and remove targets.
 * A POST may name the targets.json version its targets were made from (`expectedVersion`, the
 * `version` a GET returned): if another publish signed a version since, it answers 409 and the
 * caller reads again, so two concurrent publishes never overwrite each other's target. Entries
 * the gateway will not sign (unsafe numbers, missing hashes, apps not pinned by digest, a tag or
 * hardware id no device can have) answer 400.
 *
 * A target once signed never changes under its name, for any token (docs/formats.md): a device
 * that runs it, and a rollout that names it, take the name for that content. A POST naming an
 * existing target with other content answers 409 naming it; the same content again is accepted (a
 * publish retried after a lost answer re-posts its entries). To change one, publish a new version;
 * a removed target (`DELETE`, admin only) may be added again only while no device runs it (below). The check reads the targets the add is then
 * made on (`expectedVersion`), so a write in between is checked again, never slipped past.
 *
 * @module
 */
import { Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { TargetsBody } from "../../lib/api/admin.ts";
import { TargetEntry } from "../../lib/api/index.ts";
import { CanonicalJsonError, canonicalJson } from "../../lib/tuf/canonical-json.ts";
import type { Gateway, GatewayEnv } from "../env.ts";
import { TargetsVersionConflictError } from "../ota/repo.ts";
import { jsonBody, limit } from "../validate.ts";

import { schemaProblem } from "../../lib/api/schema-problem.ts";
import { HardwareId, Tag, TARGET_NAME_PATTERN as TARGET_NAME } from "../../lib/api/target.ts";

/**
 * A new entry's tags and hardware ids: a target signed with one no device can follow or be (the
 * Tag and HardwareId rules registration applies) would be offered to nobody. Stored targets are
 * read leniently (TargetEntry): only what is added here is held to the rule.
 */
const NewTargetCustom = Type.Object({ tags: Type.Array(Tag), hardwareIds: Type.Array(HardwareId) });

/** How often a POST without `expectedVersion` reads again when other writes keep landing first. */
const RECHECKS = 5;

/** Whether a posted entry is the one signed under its name: the same canonical JSON, what is signed. */
function sameEntry(signed: TargetEntry, posted: TargetEntry): boolean {
  try {
    return canonicalJson(signed) === canonicalJson(posted);
  } catch (e) {
    if (e instanceof CanonicalJsonError) return false; // a float: never signed, so not the same
    throw e;
  }
}

const signedAlready = (names: string[]) =>
  `Target "${names[0]}"${names.length > 1 ? ` (and ${names.length - 1} more)` : ""} is signed already with other content, and a target never changes ` +
  `once signed (devices running it and rollouts naming it go by its name): publish a new version`;

/** Target names devices report running that targets.json does not hold: removed, pruned by retention, or signed by a gateway since lost (a restore from an older backup). */
async function runningElsewhere(gw: Gateway, targets: Record<string, TargetEntry>): Promise<string[]> {
  return (await gw.store.runningTargets()).filter((n) => !Object.hasOwn(targets, n)).sort();
}

export const adminTargets = new Hono<GatewayEnv>()
  .get("/targets", async (c) => {
    const list = await c.var.gw.tuf.targets();
    const running = await runningElsewhere(c.var.gw, list.targets);
    return c.json(running.length ? { ...list, running } : list);
  })
  .post("/targets", limit(8 * 1024 * 1024), jsonBody(TargetsBody), async (c) => {
    const { targets, expectedVersion } = c.req.valid("json");
    for (const name of Object.keys(targets))
      if (!new RegExp(TARGET_NAME).test(name)) return c.json({ error: `Invalid target name "${name}"` }, 400);
    // A name devices run that targets.json no longer holds: other content under it would never reach them.
    const taken = (await runningElsewhere(c.var.gw, (await c.var.gw.tuf.targets()).targets)).filter((n) => Object.hasOwn(targets, n));
    if (taken.length)
      return c.json(
        {
          error:
            `Target "${taken[0]}" is the name of a target devices of this gateway report running, which targets.json no longer holds (removed, pruned, ` +
            `or signed by a gateway since lost: a restore from an older backup?): other content under that name would never reach them; publish a higher version`,
        },
        409,
      );
    for (const [name, entry] of Object.entries(targets)) {
      const problem = schemaProblem(NewTargetCustom, entry.custom);
      if (problem) return c.json({ error: `Invalid target "${name}": custom.${problem.field}: ${problem.message}` }, 400);
    }
    const { tuf } = c.var.gw;
    for (let attempt = 1; ; attempt++) {
      const current = await tuf.targets();
      try {
        if (expectedVersion !== undefined && expectedVersion !== current.version) throw new TargetsVersionConflictError(expectedVersion, current.version);
        const changed = Object.keys(targets).filter((name) => Object.hasOwn(current.targets, name) && !sameEntry(current.targets[name]!, targets[name]!));
        if (changed.length > 0) return c.json({ error: signedAlready(changed) }, 409);
        await tuf.addTargets(targets, { expectedVersion: current.version });
        break;
      } catch (e) {
        if (!(e instanceof TargetsVersionConflictError)) throw e; // InvalidTargetError: 400 with the reason (app.ts)
        // Another write landed after the read: check again against it, unless the caller named its version.
        if (expectedVersion === undefined && attempt < RECHECKS) continue;
        return c.json({ error: e.message, version: e.actual }, 409);
      }
    }
    return c.json(await tuf.targets());
  })
  .delete("/targets/:name", async (c) => {
    const name = c.req.param("name");
    const { tuf } = c.var.gw;
    if (!(name in (await tuf.targets()).targets)) return c.json({ error: `Target "${name}" not found` }, 404);
    await tuf.removeTargets([name]);
    return c.json(await tuf.targets());
  });
