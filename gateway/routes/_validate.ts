/** Body validation and size limits shared by the route files: clear 4xx JSON errors. */
import { tbValidator } from "@hono/typebox-validator";
import type { TSchema } from "@sinclair/typebox";
import { bodyLimit } from "hono/body-limit";

/** Validates the JSON body against a typebox schema; 400 `{error}` naming the first problem. */
export const jsonBody = <T extends TSchema>(schema: T) =>
  tbValidator("json", schema, (result, c) => {
    if (!result.success) {
      const e = result.errors[0];
      const where = e?.path ? ` at ${e.path}` : "";
      return c.json({ error: `Invalid request body${where}: ${e?.message ?? "does not match the schema"}` }, 400);
    }
  });

/** 413 `{error}` for bodies over `maxSize` bytes (checked while streaming, not after buffering). */
export const limit = (maxSize: number) =>
  bodyLimit({
    maxSize,
    onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes` }, 413),
  });
