#!/usr/bin/env bun
/**
 * preload: system images with compose apps baked in. `preload --help` lists
 * the commands and the exit codes (preload/exit-codes.ts).
 *
 * @module
 */
import pkg from "../package.json" with { type: "json" };
import { runCli } from "../lib/cli/command.ts";
import { commands } from "./commands/index.ts";
import { EXIT_CODES, exitCodeFor } from "./exit-codes.ts";

// `preload --flags...` is `preload assemble --flags...`: the tool has one job.
process.exitCode = await runCli(
  { name: "preload", version: pkg.version, summary: "assemble system images with compose apps preloaded", commands, exitCodeFor, exitCodes: EXIT_CODES, defaultCommand: "assemble" },
  process.argv.slice(2),
);
