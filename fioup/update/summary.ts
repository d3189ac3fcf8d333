/** The update as commands print it (stable JSON keys for --format json). */
import type { UpdateRow } from "../db.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { nextCommand, type UpdateState } from "./states.ts";

export interface UpdateSummary {
  id: string;
  fromTarget: string | null;
  toTarget: string;
  version: string;
  state: string;
  bytesFetched: number;
  bytesTotal: number;
  error: string | null;
  steps: string[];
  createdAt: string;
  updatedAt: string;
}

export function summarize(u: UpdateRow): UpdateSummary {
  return {
    id: u.id,
    fromTarget: u.fromTarget,
    toTarget: u.toTarget,
    version: u.version,
    state: u.state,
    bytesFetched: u.bytesFetched,
    bytesTotal: u.bytesTotal,
    error: u.error,
    steps: u.steps.map((s) => s.step),
    createdAt: u.createdAt,
    updatedAt: u.updatedAt,
  };
}

/** `runningIn`: the fioup holding the update lock now ("`fioup daemon` (process 12)"), which carries the update on: no command is next. */
export function renderSummary(s: UpdateSummary, runningIn?: string): string {
  return [
    `Update ${s.id}: ${s.fromTarget ?? "(none)"} -> ${s.toTarget} (version ${s.version})`,
    `  state: ${s.state}`,
    `  fetched: ${sizeText(s.bytesFetched, { exact: true })} of ${sizeText(s.bytesTotal, { exact: true })}`,
    ...(s.error ? [`  error: ${s.error}`] : []),
    // An update run step by step (fetch, install, start) says which step is next.
    ...(runningIn ? [`  in progress in ${runningIn}`] : []),
    ...(!runningIn && nextCommand(s.state as UpdateState) ? [`  next: '${nextCommand(s.state as UpdateState)}' (or 'fioup update' for every remaining step)`] : []),
  ].join("\n");
}
