/** POST /admin/keys/rotate {role}: replace a TUF role's key and re-sign (root signs the change). */
import { Type } from "@sinclair/typebox";
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";
import { jsonBody, limit } from "../routes/_validate.ts";

export const RotateRequest = Type.Object({
  role: Type.Union([Type.Literal("root"), Type.Literal("targets"), Type.Literal("snapshot"), Type.Literal("timestamp")]),
});

export const adminKeys = new Hono<GatewayEnv>().post("/keys/rotate", limit(4096), jsonBody(RotateRequest), async (c) => {
  const { role } = c.req.valid("json");
  await c.var.gw.tuf.rotate(role);
  const root = await c.var.gw.tuf.metadata("root.json");
  const version = root ? (JSON.parse(new TextDecoder().decode(root)) as { signed: { version: number } }).signed.version : null;
  return c.json({ role, rootVersion: version });
});
