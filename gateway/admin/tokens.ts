/** /admin/tokens: registration tokens (the secret is shown once, only its hash is kept). */
import { Type } from "@sinclair/typebox";
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";
import { newToken } from "../pki/tokens.ts";
import { jsonBody, limit } from "../routes/_validate.ts";
import { parseDuration } from "./duration.ts";

export const TokenRequest = Type.Object({
  tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 32 })),
  hwid: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  /** "30d", "12h", "90m", "3600s" or seconds; default 30 days. */
  expiresIn: Type.Optional(Type.Union([Type.String({ pattern: "^[0-9]{1,9}[smhdw]?$" }), Type.Integer({ minimum: 1 })])),
});
export const TokenCreated = Type.Object({ id: Type.String(), token: Type.String(), expiresAt: Type.String() });
export const TokenList = Type.Object({
  tokens: Type.Array(
    Type.Object({
      id: Type.String(),
      tags: Type.Array(Type.String()),
      hwid: Type.Union([Type.String(), Type.Null()]),
      createdAt: Type.String(),
      expiresAt: Type.String(),
      uses: Type.Integer(),
      expired: Type.Boolean(),
    }),
  ),
});

export const adminTokens = new Hono<GatewayEnv>()
  .post("/tokens", limit(16 * 1024), jsonBody(TokenRequest), async (c) => {
    const req = c.req.valid("json");
    const { store, ca } = c.var.gw;
    const seconds = parseDuration(req.expiresIn ?? "30d");
    const issued = newToken(ca.fingerprint);
    const now = new Date();
    const row = {
      id: crypto.randomUUID(),
      secretHash: issued.secretHash,
      tags: req.tags ?? [],
      hardwareId: req.hwid ?? null,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + seconds * 1000).toISOString(),
    };
    await store.createRegistrationToken(row);
    return c.json({ id: row.id, token: issued.token, expiresAt: row.expiresAt }, 201);
  })
  .get("/tokens", async (c) => {
    const rows = await c.var.gw.store.listRegistrationTokens();
    const now = Date.now();
    return c.json({
      tokens: rows.map((t) => ({
        id: t.id,
        tags: t.tags,
        hwid: t.hardwareId,
        createdAt: t.createdAt,
        expiresAt: t.expiresAt,
        uses: t.uses,
        expired: Date.parse(t.expiresAt) <= now,
      })),
    });
  });
