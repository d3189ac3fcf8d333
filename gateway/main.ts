#!/usr/bin/env bun
/**
 * The `gateway` binary: `gateway serve` runs the server; the other commands
 * administer a running one (or its data dir). Exit codes: gateway/exit-codes.ts,
 * shown by `gateway --help`.
 *
 * @module
 */
import pkg from "../package.json" with { type: "json" };
import { exitWhenWritten, runCli } from "../lib/cli/command.ts";
import { commands } from "./commands/index.ts";
import { EXIT_CODES, exitCodeFor } from "./exit-codes.ts";

const code = await runCli(
  {
    name: "gateway",
    version: pkg.version,
    summary: "OTA update gateway: device API, TUF repository, registry",
    commands,
    exitCodeFor,
    exitCodes: EXIT_CODES,
  },
  process.argv.slice(2),
);
await exitWhenWritten(code);
