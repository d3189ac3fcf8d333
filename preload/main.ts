#!/usr/bin/env bun
/** preload: system images with compose apps baked in. `preload --help` lists the flags. */
import pkg from "../package.json" with { type: "json" };
import { runCli } from "../lib/cli/command.ts";

const cli = {
  name: "preload",
  version: pkg.version,
  summary: "assemble system images with compose apps preloaded",
  commands: {
    assemble: () => import("./commands/assemble.ts"),
  },
};

// `preload --flags...` is `preload assemble --flags...`: the tool has one job.
let argv = process.argv.slice(2);
if (argv.length > 0 && argv[0]!.startsWith("-") && !["--version", "-v"].includes(argv[0]!)) argv = ["assemble", ...argv];
process.exitCode = await runCli(cli, argv);
