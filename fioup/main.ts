#!/usr/bin/env bun
/**
 * fioup: the device client. Compiles to one binary with
 * `bun build --compile fioup/main.ts`; it needs only Docker on the device.
 *
 * @module
 */
import { exitWhenWritten, runCli } from "../lib/cli/command.ts";
import { commands } from "./commands/index.ts";
import { EXIT_CODES, exitCodeFor } from "./exit-codes.ts";
import { FIOUP_VERSION } from "./version.ts";

const code = await runCli(
  { name: "fioup", version: FIOUP_VERSION, summary: "over-the-air updates of Docker Compose apps", commands, exitCodeFor, exitCodes: EXIT_CODES },
  process.argv.slice(2),
);
await exitWhenWritten(code);
