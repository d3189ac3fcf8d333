/** Input the commands check before any request: a parser's error becomes a usage error (exit 2). */
import { UsageError } from "../../lib/cli/command.ts";

/**
 * Runs `check`; an error of one of `classes` becomes a {@link UsageError} with its message
 * (after `prefix`, e.g. "--waves: "). Other errors pass through.
 */
export function asUsage<T>(classes: (new (...args: any[]) => Error)[], check: () => T, prefix = ""): T {
  try {
    return check();
  } catch (err) {
    if (classes.some((c) => err instanceof c)) throw new UsageError(`${prefix}${(err as Error).message}`);
    throw err;
  }
}
