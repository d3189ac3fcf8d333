/**
 * A command's flag values checked, before anything is asked of a server, against the same schema
 * the server (or the file that will hold them) checks them with: a bad value is bad usage (exit 2)
 * with the rule in the message (`--tag: expected a tag (letters, digits, . _ -; ...), got "eu/west"`),
 * not a refusal from the far end, or a value stored that nothing will ever match.
 *
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { firstValueProblem } from "../api/schema-problem.ts";
import { UsageError } from "./command.ts";

/**
 * Throws a UsageError naming `what` (a flag, or an argument's name) for the first of `values`
 * that `schema` refuses.
 *
 * @example
 * ```ts
 * checkFlagValues("--tag", Tag, ["main", "eu/west"]); // throws: --tag: expected a tag (...), got "eu/west"
 * ```
 */
export function checkFlagValues(what: string, schema: TSchema, values: readonly string[]): void {
  const problem = firstValueProblem(schema, values);
  if (problem) throw new UsageError(`${what}: ${problem}`);
}
