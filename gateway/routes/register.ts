/**
 * POST /devices: registration (fioup's flow). The caller proves it holds a
 * registration token (or an admin token); we sign its CSR with the factory
 * CA and return the certificate, the CA, the current root.json and sota.toml.
 *
 * A registration token registers at most `maxUses` devices, counted
 * atomically in the store, so of concurrent registrations for its last use
 * exactly one succeeds. The uuid must be canonical (RegistrationRequest's
 * pattern), so a look-alike of a registered uuid is refused. The device's tags come from the token (or from the
 * admin registering it); the device picks its own only when the token allows it.
 *
 * A uuid already registered is taken again only by its owner: a request made over mTLS with the
 * device's current certificate (same CN, the serial of its latest registration), a request for the
 * very key that certificate was issued for (its CSR signed by that key: the same registration sent
 * again because its answer was lost, a fioup killed or a connection dropped after the commit;
 * fioup keeps the key it sent until it has the answer), or with an admin token. That re-registration supersedes the identity: the new certificate's serial replaces the old
 * one, so the old certificate is refused (403, devices/auth.ts) on this replica at once and on others
 * within the device cache's TTL; the record keeps its uuid, so its labels, tags, groups, rollout
 * membership and history stay with it (tags are the record's, not the new token's: the admin may
 * have changed them since). A registration token alone never takes over a uuid (anyone holding a
 * fleet token could otherwise become any device). Such a refusal, and a revoked uuid, answer 409
 * (the uuid is not this request's to take), which `fioup register --force` reads as "this identity
 * cannot be kept" and then registers a new one; every other refusal is 401, 403 or 400. A
 * re-registration with a registration token keeps the device's hardware id: another one is
 * refused (403), as a device does not choose the targets it is offered or its `hwid=` groups. A
 * re-registration with a registration token spends one of its uses like any other: the token is
 * what lets a request register at all, and a use-limited token keeps its count simple; a lost
 * answer asked again spends none (a single-use token would otherwise leave the device unable to
 * register, and a device on the gateway nobody can be). Two
 * registrations of one uuid at once (a device retrying, two holders of one certificate) write
 * only over what each checked (NewDevice.replaces): one gets 201, the other 409, rather than both
 * 201 with one certificate already superseded by the other. The token's use is claimed in the
 * same transaction as the write (NewDevice.spendsUseOf), so the loser of such a race, refused at
 * the write, spends none.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { Tags } from "../../lib/api/admin.ts";
import { MAX_DEVICE_BODY, RegistrationRequest, type RegistrationResponse } from "../../lib/api/index.ts";
import { schemaProblem } from "../../lib/api/schema-problem.ts";
import { callerOf } from "../admin/auth.ts";
import type { GatewayEnv } from "../env.ts";
import { sotaToml } from "../../lib/device/sota-toml.ts";
import { csrKeySha256, signDeviceCsr } from "../pki/ca.ts";
import { TokenUsedUpError } from "../store/types.ts";
import { hashSecret, tokenSecret } from "../pki/tokens.ts";
import { jsonBody, limit } from "../validate.ts";

const refused = (why: string) => new HTTPException(401, { message: `Registration refused: ${why}` });

export const register = new Hono<GatewayEnv>().post(
  "/devices",
  limit(MAX_DEVICE_BODY),
  async (c, next) => {
    const auth = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!m) throw refused("a registration token is required (Authorization: Bearer)");
    const gw = c.var.gw;
    const caller = await callerOf(gw, m[1]!);
    if (caller?.role === "admin") return next();
    if (caller) throw new HTTPException(403, { message: `Registration refused: a ${caller.role} token cannot register devices` });
    const token = await gw.store.getRegistrationTokenByHash(hashSecret(tokenSecret(m[1]!)));
    if (!token) throw refused("unknown registration token");
    if (token.revokedAt) throw refused("the token was revoked");
    if (Date.parse(token.expiresAt) <= Date.now()) throw refused("the token has expired");
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
    if (existing?.revokedAt) return c.json({ error: `Registration refused: device "${req.uuid}" was revoked` }, 409);
    // Taking over a registered uuid needs that device's current certificate or an admin token,
    // so a fleet registration token cannot be used to impersonate an existing device.
    const peer = c.env?.peer;
    const isOwner = peer?.cn === req.uuid && peer.serial === existing?.certSerial;
    // The same key again: the answer to this device's own registration was lost (checked to be held by signDeviceCsr).
    // Asked only where it decides something: a registration token on a registered uuid, not its owner.
    const askedAgain = existing !== undefined && token !== undefined && !isOwner && (await gw.store.deviceKeySha256(req.uuid)) === csrKeySha256(req.csr);
    if (existing && token && !isOwner && !askedAgain) {
      const why = peer?.cn === req.uuid ? "the certificate presented is not its current one" : "the request did not present its current certificate";
      return c.json({ error: `Registration refused: device "${req.uuid}" is already registered and ${why} (re-register over mTLS with its current certificate, or with an admin token)` }, 409);
    }
    // Its hardware id too, unless an admin changes it: it decides which targets the device is
    // offered and which `hwid=` groups (rollout waves) hold it, which a device does not choose.
    if (existing && token && existing.hardwareId !== req["hardware-id"])
      return c.json({ error: `Registration refused: device "${req.uuid}" is registered with hardware id "${existing.hardwareId}", not "${req["hardware-id"]}" (only an admin token changes a device's hardware id)` }, 403);
    // Superseding a registered device keeps its tags (and how they are set): they belong to the uuid.
    const tagsFromDevice = existing ? existing.tagsFromDevice : (token?.allowDeviceTags ?? false);
    const own = !existing && !token?.tags.length && (!token || tagsFromDevice);
    // The device's own tags, where they count, each once, and tags a target can carry (checked before a token use is spent).
    const tags = existing ? existing.tags : token?.tags.length ? token.tags : own ? [...new Set(req.tags ?? [])] : [];
    const problem = own && req.tags ? schemaProblem(Tags, req.tags) : undefined;
    if (problem) return c.json({ error: `Invalid request body: tags${problem.field}: ${problem.message}` }, 400);
    const issued = await signDeviceCsr(gw.ca, req.csr, { uuid: req.uuid, factory: gw.factory });
    try {
      await gw.store.putDevice({
        uuid: req.uuid,
        name: req.name,
        hardwareId: req["hardware-id"],
        factory: gw.factory,
        tags,
        tagsFromDevice,
        certSerial: issued.serial,
        apps: req.apps ?? null,
        // Only over what was checked above: a registration of this uuid that came in meanwhile wins, this one is refused (409).
        replaces: existing?.certSerial ?? null,
        keySha256: issued.keySha256,
        // The last check is the atomic one: of concurrent registrations for the token's last use, one wins.
        ...(token && !askedAgain ? { spendsUseOf: token.id } : {}),
      });
    } catch (err) {
      if (err instanceof TokenUsedUpError) throw refused(`the token has been used up (${token?.maxUses} uses), revoked or has expired`);
      throw err;
    }
    gw.devices.invalidate(req.uuid);
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
      tagsFromDevice,
    };
    return c.json(body, 201);
  },
);
