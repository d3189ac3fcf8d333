/**
 * The reliability suite's scoreboard: every case says what it tried and how it
 * ended, each file prints its counts (tried / refused / survived) when it ends,
 * and with RELIABILITY_RESULTS=<file> every outcome is appended as a JSON line
 * so scripts/reliability.ts can build the summary table across files.
 *
 * @module
 */
import { appendFileSync } from "node:fs";

/**
 * refused: bad input or access rejected for the right reason; survived: the fault happened and
 * the system ended whole; failed: neither; not-tried: the fault did not land where the case
 * meant it to (a kill point never reached), so the case proves nothing and counts as no pass.
 */
export type Outcome = "refused" | "survived" | "failed" | "not-tried";

export interface CaseResult {
  suite: string;
  name: string;
  outcome: Outcome;
  detail: string;
  /** Figures for the summary table (bytes over the wire, events, status codes...). */
  figures?: Record<string, number | string | boolean>;
}

/** Long runs (load, 50+ power cuts) only when RELIABILITY_FULL=1. */
export const FULL = process.env.RELIABILITY_FULL === "1";

export class Tally {
  readonly results: CaseResult[] = [];
  readonly suite: string;
  /** `suite`, tagged `@postgres` when the harness gateways run on PostgreSQL (OTA_TEST_DB=postgres). */
  constructor(suite: string) {
    this.suite = process.env.OTA_TEST_DB === "postgres" ? `${suite}@postgres` : suite;
  }

  /** Records one case and prints it: `[suite] name -> outcome: detail`. */
  record(name: string, outcome: Outcome, detail = "", figures?: CaseResult["figures"]): void {
    const r: CaseResult = { suite: this.suite, name, outcome, detail: detail.replace(/\s+/g, " ").slice(0, 300), ...(figures ? { figures } : {}) };
    this.results.push(r);
    process.stderr.write(`[${this.suite}] ${name} -> ${outcome}${r.detail ? `: ${r.detail}` : ""}\n`);
    const out = process.env.RELIABILITY_RESULTS;
    if (out) appendFileSync(out, JSON.stringify(r) + "\n");
  }

  /**
   * Runs `attack`, which must throw: records "refused" with the error message
   * when it throws an instance of `expected`, "failed" otherwise; returns the error.
   */
  async refuses(name: string, expected: abstract new (...a: never[]) => Error, attack: () => Promise<unknown>): Promise<Error> {
    let err: unknown;
    try {
      await attack();
    } catch (e) {
      err = e;
    }
    if (err instanceof expected) {
      this.record(name, "refused", `${err.name}: ${err.message}`);
      return err;
    }
    this.record(name, "failed", err ? `wrong error ${(err as Error).name}: ${(err as Error).message}` : "accepted");
    throw new Error(`${name}: expected ${expected.name}, got ${err ? `${(err as Error).name}: ${(err as Error).message}` : "success"}`);
  }

  counts(): { tried: number; refused: number; survived: number; failed: number; notTried: number } {
    const n = (o: Outcome) => this.results.filter((r) => r.outcome === o).length;
    return { tried: this.results.length - n("not-tried"), refused: n("refused"), survived: n("survived"), failed: n("failed"), notTried: n("not-tried") };
  }

  /** Prints the counts line (call from afterAll). */
  print(): void {
    const c = this.counts();
    process.stderr.write(`[${this.suite}] tried ${c.tried} / refused ${c.refused} / survived ${c.survived}${c.failed ? ` / FAILED ${c.failed}` : ""}${c.notTried ? ` / not tried ${c.notTried}` : ""}\n`);
  }
}
