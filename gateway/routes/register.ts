/**
 * POST /devices: registration (fioup's flow). The caller proves it holds a
 * registration token (or the admin token); we sign its CSR with the factory
 * CA and return the certificate, the CA, the current root.json and sota.toml.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { MAX_DEVICE_BODY, RegistrationRequest, type RegistrationResponse } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { sotaToml } from "../devices/sota-toml.ts";
import { signDeviceCsr } from "../pki/ca.ts";
import { hashSecret, sameSecret, tokenSecret } from "../pki/tokens.ts";
import { jsonBody, limit } from "./_validate.ts";

export const register = new Hono<GatewayEnv>().post(
  "/devices",
  limit(MAX_DEVICE_BODY),
  async (c, next) => {
    const auth = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!m) throw new HTTPException(401, { message: "Registration refused: a registration token is required (Authorization: Bearer)" });
    const gw = c.var.gw;
    if (sameSecret(m[1]!, gw.adminToken)) return next();
    const token = await gw.store.getRegistrationTokenByHash(hashSecret(tokenSecret(m[1]!)));
    if (!token) throw new HTTPException(401, { message: "Registration refused: unknown registration token" });
    if (Date.parse(token.expiresAt) <= Date.now()) throw new HTTPException(401, { message: "Registration refused: the token has expired" });
    c.set("registrationToken", token);
    await next();
  },
  jsonBody(RegistrationRequest),
  async (c) => {
    const gw = c.var.gw;
    const req = c.req.valid("json");
    const token = c.var.registrationToken;
    if (token?.hardwareId && token.hardwareId !== req["hardware-id"])
      return c.json({ error: `Registration refused: this token is for hardware id "${token.hardwareId}"` }, 403);
    const existing = await gw.store.getDevice(req.uuid);
    if (existing?.revokedAt) return c.json({ error: `Registration refused: device "${req.uuid}" was revoked` }, 403);
    // Taking over a registered uuid needs that device's current certificate or the admin token,
    // so a fleet registration token cannot be used to impersonate an existing device.
    const peer = c.env?.peer;
    const isOwner = peer?.cn === req.uuid && peer.serial === existing?.certSerial;
    if (existing && token && !isOwner)
      return c.json({ error: `Registration refused: device "${req.uuid}" is already registered (re-register with its current certificate or the admin token)` }, 409);
    const issued = await signDeviceCsr(gw.ca, req.csr, { uuid: req.uuid, factory: gw.factory });
    // The token's tags, when it has any, decide the fleet the device joins.
    const tags = token?.tags.length ? token.tags : (req.tags ?? []);
    await gw.store.putDevice({
      uuid: req.uuid,
      name: req.name,
      hardwareId: req["hardware-id"],
      factory: gw.factory,
      tags,
      certSerial: issued.serial,
      apps: req.apps ?? null,
    });
    gw.devices.invalidate(req.uuid);
    if (token) await gw.store.countTokenUse(token.id);
    const root = await gw.tuf.metadata("root.json");
    const body: RegistrationResponse = {
      certificate: issued.certPem,
      ca: gw.ca.certPem,
      root: root ? JSON.parse(new TextDecoder().decode(root)) : null,
      config: sotaToml({
        server: gw.publicUrl,
        hardwareId: req["hardware-id"],
        tags,
        ...(req.apps ? { apps: req.apps } : {}),
        pollingSeconds: gw.pollingSeconds,
      }),
    };
    return c.json(body, 201);
  },
);
