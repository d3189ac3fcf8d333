/**
 * What is wrong with a value that does not match its typebox schema, said one way everywhere
 * (request bodies, config files, saved plans, bundle indexes, agent messages): the field as
 * people write it (`events[0].kind`, `uptane.polling_seconds`), what it should be and what it
 * is. A schema may say what it takes in words with an `expected` option
 * (`Type.Union([...], { expected: "a whole number" })`): typebox's own text for a union is
 * only "Expected union value".
 *
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType, type ValueError, type ValueErrorIterator } from "@sinclair/typebox/value";

/** A compiled check (TypeCompiler) or anything else that lists a value's errors. */
interface ErrorLister {
  Errors(value: unknown): ValueErrorIterator;
}

/**
 * A JSON pointer as people write a field: `/events/0/kind` → `events[0].kind`; "" for the root.
 *
 * @example
 * ```ts
 * fieldPath("/containers/tagging/refs~1heads~1main/0/tag"); // 'containers.tagging["refs/heads/main"][0].tag'
 * ```
 */
export function fieldPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"))
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : /^[A-Za-z_][\w-]*$/.test(p) ? `${i ? "." : ""}${p}` : `[${JSON.stringify(p)}]`))
    .join("");
}

/** A value as a message shows it: short JSON for a scalar, its kind for the rest. */
function shown(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (value !== null && typeof value === "object") return "an object";
  const json = JSON.stringify(value);
  return json.length <= 64 ? json : `${json.slice(0, 61)}...`;
}

/** typebox's "Expected string" as the middle of a sentence: "expected a string". */
function what(e: ValueError): string {
  const expected = (e.schema as { expected?: unknown }).expected;
  if (typeof expected === "string") return `expected ${expected}`;
  if (e.type === ValueErrorType.Union) {
    const members = e.errors.map((it) => it.First()?.message).filter((m): m is string => !!m);
    if (members.length) return members.map((m, i) => (i ? m.replace(/^Expected /, "") : m.replace(/^E/, "e"))).join(" or ");
  }
  if (e.type === ValueErrorType.ObjectRequiredProperty) return "is required";
  return e.message.replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase());
}

/** How to pick the problem to tell: `deepest` takes the one furthest down (for a value whose
 * top is a union of shapes, where the first problem is only "none of them"). */
export interface ProblemOptions {
  deepest?: boolean;
}

/** The first problem of `value` against `schema` (or a compiled check), or undefined if it matches. */
export function schemaProblem(schema: TSchema | ErrorLister, value: unknown, opts: ProblemOptions = {}): { field: string; message: string } | undefined {
  const errors = "Errors" in schema && typeof schema.Errors === "function" ? schema.Errors(value) : Value.Errors(schema as TSchema, value);
  const depth = (x: ValueError) => x.path.split("/").length;
  const e = opts.deepest ? [...errors].reduce<ValueError | undefined>((best, x) => (!best || depth(x) > depth(best) ? x : best), undefined) : errors.First();
  if (!e) return undefined;
  const message = e.type === ValueErrorType.ObjectRequiredProperty ? what(e) : `${what(e)}, got ${shown(e.value)}`;
  return { field: fieldPath(e.path), message };
}

/**
 * The problem of the first of `values` that `schema` refuses, each checked on its own (the items
 * of a flag's or a config key's list, which the caller names), or undefined if all match.
 *
 * @example
 * ```ts
 * firstValueProblem(Tag, ["main", "eu/west"]); // 'expected a tag (...), got "eu/west"'
 * ```
 */
export function firstValueProblem(schema: TSchema, values: readonly unknown[]): string | undefined {
  for (const value of values) {
    const problem = schemaProblem(schema, value);
    if (problem) return problem.message;
  }
  return undefined;
}

/**
 * `field: what it should be, got what it is`, for a value that does not match; `root` names the
 * whole value when the problem is there ("the body", "the document").
 *
 * @example
 * ```ts
 * describeSchemaProblem(Type.Object({ n: Type.Integer() }), { n: "x" }); // 'n: expected integer, got "x"'
 * ```
 */
export function describeSchemaProblem(schema: TSchema | ErrorLister, value: unknown, root = "the document", opts: ProblemOptions = {}): string {
  const p = schemaProblem(schema, value, opts);
  if (!p) return `${root}: matches`;
  return `${p.field || root}: ${p.message}`;
}
