/**
 * /admin/rollouts: staged releases of a target version to a group or a tag,
 * wave by wave (docs/rollouts.md). The routes validate and hand over to the
 * rollout service (gateway/rollouts/service.ts), whose errors the app's one
 * error handler maps (not found 404, wrong state 409, invalid 400). Writes
 * need an admin token; a viewer may read.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { RolloutRequest, type RolloutList } from "../../lib/api/admin.ts";
import type { GatewayEnv, RolloutService } from "../env.ts";
import { jsonBody, limit } from "../validate.ts";

const ACTIONS = ["pause", "resume", "advance", "cancel"] as const;

function service(c: { var: GatewayEnv["Variables"] }): RolloutService {
  const s = c.var.gw.rollouts;
  if (!s) throw new HTTPException(503, { message: "Rollouts are not enabled on this gateway" });
  return s;
}

export const adminRollouts = new Hono<GatewayEnv>()
  .get("/rollouts", async (c) => {
    const active = c.req.query("active");
    if (active !== undefined && !["1", "true", "0", "false"].includes(active))
      throw new HTTPException(400, { message: "Invalid active: expected 1, true, 0 or false" });
    const n = Number(c.req.query("limit") ?? 100);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new HTTPException(400, { message: "Invalid limit: expected an integer from 1 to 1000" });
    const rollouts = await c.var.gw.store.listRollouts({ active: active === "1" || active === "true", limit: n });
    return c.json({ rollouts } satisfies RolloutList);
  })
  .post("/rollouts", limit(256 * 1024), jsonBody(RolloutRequest), async (c) => {
    const req = c.req.valid("json");
    if ((req.group === undefined) === (req.tag === undefined)) throw new HTTPException(400, { message: "Give exactly one of group or tag" });
    return c.json(await service(c).create(req), 201);
  })
  .get("/rollouts/:id", async (c) => {
    const id = c.req.param("id");
    const detail = await service(c).show(id);
    if (!detail) throw new HTTPException(404, { message: `Rollout "${id}" not found` });
    return c.json(detail);
  })
  .post("/rollouts/:id/:action", async (c) => {
    const action = c.req.param("action") as (typeof ACTIONS)[number];
    if (!ACTIONS.includes(action)) throw new HTTPException(404, { message: `Not found: POST ${c.req.path} (actions: ${ACTIONS.join(", ")})` });
    if (action !== "advance") return c.json(await service(c)[action](c.req.param("id")));
    // ?fromWave=N: advance only from wave N (1-based), as the operator saw it: a second click is refused, not a second wave released.
    const fromWave = c.req.query("fromWave");
    if (fromWave !== undefined && !/^[1-9][0-9]{0,5}$/.test(fromWave)) throw new HTTPException(400, { message: "Invalid fromWave: expected the wave number (1, 2, ...) the rollout is at" });
    return c.json(await service(c).advance(c.req.param("id"), fromWave === undefined ? undefined : Number(fromWave)));
  });
