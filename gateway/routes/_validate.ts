/**
 * Body validation shared by the route files: every JSON body goes through the
 * one reader in lib/api/json-body.ts (size and nesting depth capped before
 * parsing), then a compiled typebox check. Problems answer 400 (413 when too
 * large) with `{error}` naming the reason.
 *
 * @module
 */
import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { Env, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { JsonBodyError, type JsonLimits, readJsonBody } from "../../lib/api/json-body.ts";

/**
 * Reads the JSON body (at most `limits.maxBytes`, nested at most `limits.maxDepth` deep) and
 * validates it against `schema`; the handler gets it from `c.req.valid("json")`.
 */
export const jsonBody = <T extends TSchema, E extends Env = any>(
  schema: T,
  limits: JsonLimits = {},
): MiddlewareHandler<E, string, { in: { json: Static<T> }; out: { json: Static<T> } }> => {
  const check = TypeCompiler.Compile(schema);
  return async (c, next) => {
    let value: unknown;
    try {
      value = await readJsonBody(c.req.raw, limits);
    } catch (err) {
      if (err instanceof JsonBodyError) return c.json({ error: err.message }, err.status);
      throw err;
    }
    if (!check.Check(value)) {
      const e = check.Errors(value).First();
      const where = e?.path ? ` at ${e.path}` : "";
      return c.json({ error: `Invalid request body${where}: ${e?.message ?? "does not match the schema"}` }, 400);
    }
    c.req.addValidatedData("json", value as object);
    await next();
  };
};

/** 413 `{error}` for bodies over `maxSize` bytes (checked while streaming, not after buffering): for bodies that are not JSON. */
export const limit = (maxSize: number) =>
  bodyLimit({
    maxSize,
    onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes` }, 413),
  });
