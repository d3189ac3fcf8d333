#!/usr/bin/env bun
/**
 * The `gateway` binary: `gateway serve` runs the server; the other commands
 * administer a running one (or its data dir). Exit codes: 0 ok, 1 error,
 * 2 usage, 3 the gateway refused the request, 4 it could not be reached.
 *
 * @module
 */
import pkg from "../package.json" with { type: "json" };
import { runCli } from "../lib/cli/command.ts";
import { AdminRequestError, CaPinMismatchError } from "./commands/_admin-client.ts";
import { commands } from "./commands/index.ts";

const EXIT_CODES: [new (...args: any[]) => Error, number][] = [
  [AdminRequestError, 3],
  [CaPinMismatchError, 4],
];

const exitCodeFor = (err: unknown): number => {
  const hit = EXIT_CODES.find(([cls]) => err instanceof cls)?.[1];
  if (hit) return hit;
  const code = (err as { code?: string })?.code;
  return code === "ConnectionRefused" || code === "ECONNREFUSED" || code === "FailedToOpenSocket" ? 4 : 1;
};

const code = await runCli(
  { name: "gateway", version: pkg.version, summary: "OTA update gateway: device API, TUF repository, registry", commands, exitCodeFor },
  process.argv.slice(2),
);
process.exit(code);
