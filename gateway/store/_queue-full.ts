/**
 * For the stores' tests of the bounds on writes waiting for the database (EVENT_QUEUE_MAX and
 * STATE_WRITES_MAX in ./_waiting-writes.ts): how writes made past the bound ended, waiting at
 * most 1 s for each.
 */
import { StoreUnavailableError } from "./types.ts";

export interface Refusal {
  /** The error's class name, or "answered" / "still waiting" if it was not refused. */
  outcome: string;
  /** What app.ts puts in `Retry-After` (undefined unless a StoreUnavailableError). */
  retryAfterSeconds?: number;
  /** Refused within 200 ms of the call: at once, not after the stall. */
  atOnce: boolean;
}

export async function refusals(calls: (() => Promise<unknown>)[]): Promise<Refusal[]> {
  return Promise.all(
    calls.map(async (call) => {
      const started = performance.now();
      const outcome = await Promise.race([
        call().then(
          () => ({ outcome: "answered" }),
          (err: unknown) => ({
            outcome: (err as Error).name,
            ...(err instanceof StoreUnavailableError ? { retryAfterSeconds: err.retryAfterSeconds } : {}),
          }),
        ),
        Bun.sleep(1000).then(() => ({ outcome: "still waiting" })),
      ]);
      return { ...outcome, atOnce: performance.now() - started < 200 };
    }),
  );
}
