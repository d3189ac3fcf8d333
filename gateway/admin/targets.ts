/**
 * /admin/targets: read, add/replace (one signed version, all or nothing) and remove targets.
 * A POST may name the targets.json version its targets were made from (`expectedVersion`, the
 * `version` a GET returned): if another publish signed a version since, it answers 409 and the
 * caller reads again, so two concurrent publishes never overwrite each other's target. Entries
 * the gateway will not sign (unsafe numbers, missing hashes, apps not pinned by digest, a tag or
 * hardware id no device can have) answer 400.
 *
 * @module
 */
import { Type } from "@sinclair/typebox";
import { Hono } from "hono";
import { TargetsList } from "../../lib/api/admin.ts";
import { TargetEntry } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { TargetsVersionConflictError } from "../ota/repo.ts";
import { jsonBody, limit } from "../routes/_validate.ts";

import { schemaProblem } from "../../lib/api/schema-problem.ts";
import { HardwareId, Tag, TARGET_NAME_PATTERN as TARGET_NAME } from "../../lib/api/target.ts";

/**
 * A new entry's tags and hardware ids: a target signed with one no device can follow or be (the
 * Tag and HardwareId rules registration applies) would be offered to nobody. Stored targets are
 * read leniently (TargetEntry): only what is added here is held to the rule.
 */
const NewTargetCustom = Type.Object({ tags: Type.Array(Tag), hardwareIds: Type.Array(HardwareId) });

export const TargetsBody = Type.Object({
  targets: Type.Record(Type.String({ pattern: TARGET_NAME }), TargetEntry, { minProperties: 1, maxProperties: 1000 }),
  /** The targets.json version these targets were made from; 409 if it is no longer the latest. */
  expectedVersion: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
});
export { TargetsList };

export const adminTargets = new Hono<GatewayEnv>()
  .get("/targets", async (c) => c.json(await c.var.gw.tuf.targets()))
  .post("/targets", limit(8 * 1024 * 1024), jsonBody(TargetsBody), async (c) => {
    const { targets, expectedVersion } = c.req.valid("json");
    for (const name of Object.keys(targets))
      if (!new RegExp(TARGET_NAME).test(name)) return c.json({ error: `Invalid target name "${name}"` }, 400);
    for (const [name, entry] of Object.entries(targets)) {
      const problem = schemaProblem(NewTargetCustom, entry.custom);
      if (problem) return c.json({ error: `Invalid target "${name}": custom.${problem.field}: ${problem.message}` }, 400);
    }
    try {
      await c.var.gw.tuf.addTargets(targets, expectedVersion === undefined ? {} : { expectedVersion });
    } catch (e) {
      if (e instanceof TargetsVersionConflictError) return c.json({ error: e.message, version: e.actual }, 409);
      throw e; // InvalidTargetError: 400 with the reason (app.ts)
    }
    return c.json(await c.var.gw.tuf.targets());
  })
  .delete("/targets/:name", async (c) => {
    const name = c.req.param("name");
    const { tuf } = c.var.gw;
    if (!(name in (await tuf.targets()).targets)) return c.json({ error: `Target "${name}" not found` }, 404);
    await tuf.removeTargets([name]);
    return c.json(await tuf.targets());
  });
