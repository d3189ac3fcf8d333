/**
 * Body validation shared by the Hono app's route files (the device routes, /admin, the
 * dashboard), in one home beside them all, so admin/ does not reach into routes/ for it. Every
 * JSON body goes through the one reader in lib/api/json-body.ts (size and nesting depth capped
 * before parsing), then a compiled typebox check. Problems answer 400 (413 when too large) with
 * `{error}` naming the reason.
 *
 * @module
 */
import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { Env, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { JsonBodyError, type JsonLimits, MAX_JSON_BYTES, parseJsonBytes, readJsonBody } from "../lib/api/json-body.ts";
import { describeSchemaProblem } from "../lib/api/schema-problem.ts";

/** Why a body was refused: the answer's status and `{error}` message. */
export interface BodyProblem {
  status: 400 | 413;
  error: string;
}

/**
 * A compiled reader for one schema: reads the JSON body of a request (at most `limits.maxBytes`,
 * nested at most `limits.maxDepth` deep) and checks it; resolves to the value, or to the problem.
 */
export const jsonBodyReader = <T extends TSchema>(schema: T, limits: JsonLimits = {}): JsonBodyReader<Static<T>> => {
  const check = TypeCompiler.Compile(schema);
  const maxBytes = limits.maxBytes ?? MAX_JSON_BYTES;
  const checked = (value: unknown): BodyRead<Static<T>> => {
    if (!check.Check(value)) {
      return { problem: { status: 400, error: `Invalid request body: ${describeSchemaProblem(check, value, "the body")}` } };
    }
    return { value };
  };
  const problem = (err: unknown): BodyRead<never> => {
    if (err instanceof JsonBodyError) return { problem: { status: err.status, error: err.message } };
    throw err;
  };
  const read = async (req: Request): Promise<BodyRead<Static<T>>> => {
    let value: unknown;
    try {
      // A body of declared length within the limit (the transport holds it to that length) is read whole, without a stream reader.
      const declared = Number(req.headers.get("content-length") ?? Number.NaN);
      value = declared > 0 && declared <= maxBytes ? parseJsonBytes(await req.bytes(), limits) : await readJsonBody(req, limits);
    } catch (err) {
      return problem(err);
    }
    return checked(value);
  };
  return Object.assign(read, {
    bytes(body: Uint8Array): BodyRead<Static<T>> {
      let value: unknown;
      try {
        value = parseJsonBytes(body, limits); // over the limit: the same 413 as readJsonBody's for a declared length
      } catch (err) {
        return problem(err);
      }
      return checked(value);
    },
  });
};

/** A body read and checked: the value, or why it was refused. */
export type BodyRead<T> = { value: T } | { problem: BodyProblem };

/** A compiled body reader (jsonBodyReader's result): of a web Request, or of a body already read whole. */
export interface JsonBodyReader<T> {
  (req: Request): Promise<BodyRead<T>>;
  /** The same check of a non-empty body already read whole, as the call above answers a Request with that body and its length. */
  bytes(body: Uint8Array): BodyRead<T>;
}

/**
 * Reads the JSON body (at most `limits.maxBytes`, nested at most `limits.maxDepth` deep) and
 * validates it against `schema`; the handler gets it from `c.req.valid("json")`. Given a reader
 * from jsonBodyReader instead of a schema, uses it (one compiled check shared with a fast path).
 */
export function jsonBody<T extends TSchema, E extends Env = any>(
  schema: T,
  limits?: JsonLimits,
): MiddlewareHandler<E, string, { in: { json: Static<T> }; out: { json: Static<T> } }>;
export function jsonBody<V, E extends Env = any>(reader: JsonBodyReader<V>): MiddlewareHandler<E, string, { in: { json: V }; out: { json: V } }>;
export function jsonBody(schemaOrReader: TSchema | JsonBodyReader<unknown>, limits: JsonLimits = {}): MiddlewareHandler {
  const read = typeof schemaOrReader === "function" ? schemaOrReader : jsonBodyReader(schemaOrReader, limits);
  return async (c, next) => {
    const r = await read(c.req.raw);
    if ("problem" in r) return c.json({ error: r.problem.error }, r.problem.status);
    c.req.addValidatedData("json", r.value as object);
    await next();
  };
}

/** 413 `{error}` for bodies over `maxSize` bytes (checked while streaming, not after buffering): for bodies that are not JSON. */
export const limit = (maxSize: number) =>
  bodyLimit({
    maxSize,
    onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes` }, 413),
  });
