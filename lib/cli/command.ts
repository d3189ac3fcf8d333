/**
 * A CLI is a table of commands, one file each. This module is the
 * small shared runner used by all three binaries: flags and exit codes are
 * data, `--help` is generated from them, `--format json` is a shared flag (or a command's own
 * boolean flag, {@link Command.jsonFlag}), and errors are turned into exit codes, and printed as
 * JSON when asked, in one place by the binary's own table.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { closest } from "./suggest.ts";
import { compactJson } from "./json.ts";
import { fsWhy } from "../fs/why.ts";

/**
 * A string flag given an empty value (`--factory ''`, `--out "$UNSET"`) is bad usage: taken as
 * left out it would silently fall back to a default (one fixed for good, for --factory), and as a
 * path it is the current directory. `allowEmpty` is for a flag whose command gives "" a meaning or
 * refuses it in words of its own.
 */
export type FlagSpec =
  | { type: "string"; description: string; default?: string; short?: string; placeholder?: string; allowEmpty?: boolean }
  | { type: "boolean"; description: string; default?: boolean; short?: string }
  | { type: "strings"; description: string; short?: string; placeholder?: string; allowEmpty?: boolean }
  /** A whole number (decimal digits), checked against `min`/`max`: anything else is a usage error. */
  | { type: "number"; description: string; default?: number; min?: number; max?: number; short?: string; placeholder?: string };

export type FlagValues<F extends Record<string, FlagSpec>> = {
  [K in keyof F]: F[K] extends { type: "boolean" }
    ? boolean
    : F[K] extends { type: "strings" }
      ? string[]
      : F[K] extends { type: "number" }
        ? F[K] extends { default: number }
          ? number
          : number | undefined
        : F[K] extends { default: string }
        ? string
        : string | undefined;
};

/** Where a command writes: results to stdout (JSON with --format json), everything else to stderr. */
export interface Output {
  readonly json: boolean;
  /** Prints the command's result: JSON on stdout with --format json, else `render(data)`. */
  result<T>(data: T, render?: (data: T) => string): void;
  /** A log line for humans, always on stderr. */
  info(line: string): void;
}

export interface CommandContext<F extends Record<string, FlagSpec>> {
  flags: FlagValues<F>;
  args: string[];
  out: Output;
}

export interface Command<F extends Record<string, FlagSpec> = Record<string, FlagSpec>> {
  summary: string;
  /** Positional arguments, for --help, e.g. "[version]". A command without it takes none: any is a usage error. */
  usage?: string;
  /** Longer text shown by --help under the summary. */
  description?: string;
  /**
   * The exit codes this command's --help lists, under the description: a code alone is that row of
   * the binary's table ({@link CliSpec.exitCodes}), said without a leading scope that names this
   * command ("publish: ", "publish and export: "); `[code, meaning]` is this command's own wording.
   */
  exitCodes?: readonly (number | readonly [number, string])[];
  flags: F;
  /**
   * A boolean flag of this command that asks for JSON, for a command whose `--format` means
   * something else (preload's names the image's type, so it takes `--json`): set, it works as
   * `--format json` does: `out.result` prints JSON and an error is also `{error, code, exitCode}` on stdout.
   */
  jsonFlag?: { [K in keyof F]: F[K] extends { type: "boolean" } ? K : never }[keyof F] & string;
  run(ctx: CommandContext<F>): Promise<number | void> | number | void;
}

export function defineCommand<F extends Record<string, FlagSpec>>(cmd: Command<F>): Command<F> {
  return cmd;
}

/** The shared `--format json|text` flag. */
export const formatFlag = {
  format: { type: "string", description: "Output format: text or json", default: "text", placeholder: "FORMAT" },
} as const satisfies Record<string, FlagSpec>;

export class UsageError extends Error {
  override name = "UsageError";
}

type Loader = () => Promise<{ default: Command<any> }>;

export interface CliSpec {
  name: string;
  version: string;
  summary: string;
  commands: Record<string, Loader>;
  /** Maps an error to an exit code (the binary's exit-code table). */
  exitCodeFor?: (err: unknown) => number;
  /** The exit-code table as `--help` shows it: [code, meaning]. */
  exitCodes?: readonly (readonly [number, string])[];
  /** The command run when the first argument is a flag (`preload --ref x` is `preload assemble --ref x`). */
  defaultCommand?: string;
}

function flagHelp(flags: Record<string, FlagSpec>): string {
  const rows = Object.entries(flags).map(([name, spec]) => {
    const ph = spec.type === "boolean" ? "" : ` ${("placeholder" in spec && spec.placeholder) || name.toUpperCase()}`;
    const short = spec.short ? `-${spec.short}, ` : "    ";
    const def = "default" in spec && spec.default !== undefined && spec.default !== false ? ` (default: ${spec.default})` : "";
    const rep = spec.type === "strings" ? " (repeatable)" : "";
    return [`  ${short}--${name}${ph}`, `${spec.description}${rep}${def}`] as const;
  });
  rows.push(["      --help", "Show this help"] as const);
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, r]) => l.padEnd(width) + r).join("\n");
}

/** An "Exit codes:" section, one row a line, the codes right-aligned; none for no rows. */
function exitCodeHelp(rows: readonly (readonly [number, string])[] | undefined): string[] {
  return rows?.length ? ["", "Exit codes:", ...rows.map(([code, meaning]) => `  ${String(code).padStart(3)}  ${meaning}`)] : [];
}

/** A meaning in the binary's table may start with the commands it is about ("publish and export: "): said in one of their own --help, that is left out. */
const SCOPE = /^([a-z][a-z -]*?): /;

/** The rows a command's --help lists: its own wording, or the binary's table's. */
function commandExitCodes(cli: CliSpec, name: string, cmd: Command<any>): (readonly [number, string])[] {
  return (cmd.exitCodes ?? []).map((row) => {
    if (typeof row !== "number") return row;
    const meaning = cli.exitCodes?.find(([code]) => code === row)?.[1];
    if (meaning === undefined) throw new Error(`${cli.name} ${name} lists exit code ${row}, which ${cli.name}'s exit-code table does not have`);
    const scope = SCOPE.exec(meaning);
    return [row, scope && scope[1]!.split(" and ").includes(name) ? meaning.slice(scope[0].length) : meaning] as const;
  });
}

function commandHelp(cli: CliSpec, name: string, cmd: Command<any>): string {
  const usage = `Usage: ${cli.name} ${name}${cmd.usage ? " " + cmd.usage : ""} [flags]`;
  return [
    usage,
    "",
    cmd.summary,
    ...(cmd.description ? ["", cmd.description] : []),
    ...exitCodeHelp(commandExitCodes(cli, name, cmd)),
    "",
    "Flags:",
    flagHelp(cmd.flags),
  ].join("\n");
}

/** One line per command, its name and summary, the summaries aligned. */
async function commandLines(cli: CliSpec, names: string[]): Promise<string[]> {
  const entries = await Promise.all(names.map(async (name) => [name, (await cli.commands[name]!()).default.summary] as const));
  const width = Math.max(...entries.map(([n]) => n.length)) + 4;
  return entries.map(([n, s]) => `  ${n.padEnd(width)}${s}`);
}

async function mainHelp(cli: CliSpec): Promise<string> {
  return [
    `${cli.name} ${cli.version}: ${cli.summary}`,
    "",
    `Usage: ${cli.name} ${cli.defaultCommand ? "[<command>]" : "<command>"} [flags]`,
    "",
    "Commands:",
    ...(await commandLines(cli, Object.keys(cli.commands))),
    ...(cli.defaultCommand ? ["", `Without a command, ${cli.name} runs '${cli.defaultCommand}': '${cli.name} --FLAG ...' is '${cli.name} ${cli.defaultCommand} --FLAG ...'.`] : []),
    "",
    `Run '${cli.name} <command> --help' for a command's flags.`,
    "",
    "Flags:",
    "  -h, --help      Print this help",
    "  -v, --version   Print the version",
    ...exitCodeHelp(cli.exitCodes),
  ].join("\n");
}

async function groupHelp(cli: CliSpec, group: string, names: string[]): Promise<string> {
  return [
    `Usage: ${cli.name} ${group} <command> [flags]`,
    "",
    "Commands:",
    ...(await commandLines(cli, names)),
    "",
    `Run '${cli.name} ${group} <command> --help' for a command's flags.`,
  ].join("\n");
}

function makeOutput(json: boolean): Output {
  return {
    json,
    result(data, render) {
      // Compact and depth-bounded: device-supplied data can be nested arbitrarily deep.
      if (json) process.stdout.write(compactJson(data) + "\n");
      else process.stdout.write((render ? render(data) : String(data)).replace(/\n?$/, "\n"));
    },
    info(line) {
      process.stderr.write(line + "\n");
    },
  };
}

/**
 * Ends the process with `code` once what it wrote to stdout and stderr is taken: `process.exit`
 * drops what a pipe has not taken yet, so `gateway devices list | (sleep 1; wc -l)` got 277 of 301
 * lines (and `--format json` stopped at 64 KiB, mid-string) with exit 0. A binary's main ends
 * with this, not with process.exit, which it still needs: a command may leave handles open
 * (a database pool, a timer) that would otherwise keep the process alive.
 *
 * @example
 * ```ts
 * await exitWhenWritten(await runCli(spec, process.argv.slice(2)));
 * ```
 */
export async function exitWhenWritten(code: number): Promise<never> {
  // A reader gone (`| head -1`: EPIPE) is no reason to wait or to fail: the command's code stands.
  await Promise.all(
    [process.stdout, process.stderr].map(
      (s) =>
        new Promise<void>((resolve) => {
          s.once("error", () => resolve());
          s.end(() => resolve());
        }),
    ),
  );
  process.exit(code);
}

/**
 * Runs a CLI; returns the process exit code. Commands may be nested with a
 * space in their name ("devices list"): the longest matching prefix wins.
 */
export async function runCli(cli: CliSpec, argv: string[]): Promise<number> {
  // `fioup help update` is `fioup update --help`.
  if (argv[0] === "help" && argv.length > 1) argv = [...argv.slice(1), "--help"];
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    process.stdout.write((await mainHelp(cli)) + "\n");
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === "--version" || argv[0] === "-v") {
    process.stdout.write(`${cli.name} ${cli.version}\n`);
    return 0;
  }
  if (cli.defaultCommand && argv[0]!.startsWith("-")) argv = [cli.defaultCommand, ...argv];
  let name: string | undefined;
  for (let n = Math.min(argv.length, 3); n >= 1; n--) {
    const candidate = argv.slice(0, n).join(" ");
    if (candidate in cli.commands) {
      name = candidate;
      argv = argv.slice(n);
      break;
    }
  }
  if (!name) {
    const group = Object.keys(cli.commands).filter((c) => c.startsWith(argv[0] + " "));
    if (group.length) {
      // `gateway keys --help`: the group's commands with their summaries, as the main help lists them.
      if (argv[1] === "--help" || argv[1] === "-h") {
        process.stdout.write((await groupHelp(cli, argv[0]!, group)) + "\n");
        return 0;
      }
      const subs = group.map((g) => g.split(" ").slice(1).join(" "));
      const meant = argv[1] !== undefined && !argv[1].startsWith("-") ? closest(argv[1], subs) : undefined;
      const unknown = argv[1] === undefined ? "" : argv[1].startsWith("-") ? `'${argv[1]}' is a flag, and a command comes first; ` : `unknown command '${argv[1]}'${meant ? ` (did you mean '${meant}'?)` : ""}; `;
      process.stderr.write(`${cli.name} ${argv[0]}: ${unknown}choose one of: ${subs.join(", ")}\n`);
      return 2;
    }
    if (argv[0]!.startsWith("-")) {
      process.stderr.write(`${cli.name}: unknown flag ${argv[0]}: a command comes first. Run '${cli.name} --help' for the list.\n`);
      return 2;
    }
    const meant = closest(argv[0] ?? "", Object.keys(cli.commands).map((c) => c.split(" ")[0]!));
    process.stderr.write(`${cli.name}: unknown command '${argv[0]}'${meant ? ` (did you mean '${meant}'?)` : ""}. Run '${cli.name} --help' for the list.\n`);
    return 2;
  }
  const cmd = (await cli.commands[name]!()).default;
  // A command that is also a group's name (`backup`, and `backup keygen`): its help names them, and a mistyped one is suggested.
  const subs = Object.keys(cli.commands).filter((c) => c.startsWith(name + " "));
  if (argv.includes("--help") || argv.includes("-h")) {
    const more = subs.length ? ["", `Commands under '${cli.name} ${name}':`, ...(await commandLines(cli, subs))] : [];
    process.stdout.write([commandHelp(cli, name, cmd), ...more].join("\n") + "\n");
    return 0;
  }
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean; default?: any }> = {};
  for (const [flag, spec] of Object.entries(cmd.flags as Record<string, FlagSpec>)) {
    options[flag] = {
      type: spec.type === "boolean" ? "boolean" : "string",
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.type === "strings" ? { multiple: true, default: [] } : {}),
      ...("default" in spec && spec.default !== undefined ? { default: spec.type === "number" ? String(spec.default) : spec.default } : {}),
    };
  }
  let parsed;
  const args = joinDashValues(argv, options);
  try {
    parsed = parseArgs({ args, allowPositionals: true, options, strict: true, tokens: true });
    refuseConflictingRepeats(parsed.tokens, options);
    // Words a command does not take would be silently ignored (`tokens list extra`).
    if (cmd.usage === undefined && parsed.positionals.length) {
      const word = parsed.positionals[0]!;
      const meant = closest(word, subs.map((c) => c.slice(name!.length + 1)));
      throw new Error(`unexpected argument '${word}': this command takes flags only${meant ? ` (did you mean '${cli.name} ${name} ${meant}'?)` : ""}`);
    }
  } catch (err) {
    process.stderr.write(`${cli.name} ${name}: ${parseErrorMessage(err as NodeJS.ErrnoException, Object.keys(options), args)}\nRun '${cli.name} ${name} --help' for usage.\n`);
    return 2;
  }
  const values = parsed.values as Record<string, unknown>;
  for (const [flag, spec] of Object.entries(cmd.flags as Record<string, FlagSpec>)) {
    if ((spec.type === "string" || spec.type === "strings") && !spec.allowEmpty && [values[flag]].flat().includes("")) {
      const def = "default" in spec && spec.default !== undefined ? ` (default: ${spec.default})` : "";
      process.stderr.write(`${cli.name} ${name}: --${flag} is empty: give ${spec.placeholder ?? flag.toUpperCase()}, or leave the flag out${def}\nRun '${cli.name} ${name} --help' for usage.\n`);
      return 2;
    }
    if (spec.type === "boolean" && values[flag] === undefined) values[flag] = false;
    if (spec.type === "number" && values[flag] !== undefined) {
      const text = String(values[flag]);
      const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      const range = `${spec.min ?? 0}${spec.max !== undefined ? `..${spec.max}` : " or more"}`;
      if (!Number.isSafeInteger(n) || n < (spec.min ?? 0) || (spec.max !== undefined && n > spec.max)) {
        process.stderr.write(`${cli.name} ${name}: --${flag} must be a whole number ${range}, got "${text}"\nRun '${cli.name} ${name} --help' for usage.\n`);
        return 2;
      }
      values[flag] = n;
    }
  }
  // Only commands that take the shared --format flag speak JSON; others may use --format for their own ends.
  const fmt = (cmd.flags as Record<string, FlagSpec>).format === formatFlag.format ? values.format : undefined;
  if (fmt !== undefined && fmt !== "text" && fmt !== "json") {
    process.stderr.write(`${cli.name} ${name}: --format must be text or json, got "${fmt}"\nRun '${cli.name} ${name} --help' for usage.\n`);
    return 2;
  }
  const out = makeOutput(cmd.jsonFlag !== undefined ? values[cmd.jsonFlag] === true : fmt === "json");
  try {
    const code = await cmd.run({ flags: values as any, args: parsed.positionals, out });
    return typeof code === "number" ? code : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${cli.name} ${name}: ${err.message}\nRun '${cli.name} ${name} --help' for usage.\n`);
      return 2;
    }
    const code = cli.exitCodeFor?.(err) ?? 1;
    const msg = describeError(err);
    if (out.json) process.stdout.write(JSON.stringify({ error: msg, code: (err as Error)?.name ?? "Error", exitCode: code }) + "\n");
    process.stderr.write(`${cli.name} ${name}: ${msg}\n`);
    if (process.env.DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + "\n");
    return code;
  }
}

/**
 * parseArgs' errors in this CLI's words: the flag and what is wrong with it, and for an unknown
 * flag the known one most likely meant (its own text suggests `--` and positionals instead).
 * A long flag typed with one dash (`-data`) is read as the short flags d, a, t, a: parseArgs names
 * only the letter, so the word typed is found in `args` and named, with `--data` if it is one.
 */
function parseErrorMessage(err: NodeJS.ErrnoException, flags: string[], args: readonly string[]): string {
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const letter = /^Unknown option '([^'-])'/.exec(err.message)?.[1];
    // Without any `=value`: `-token=s3cret` must not put the secret in a CI log.
    const typed = letter === undefined ? undefined : shortCluster(args, letter)?.split("=")[0];
    if (typed) {
      const meant = closest(typed.slice(1), flags);
      return `unknown flag ${typed}${meant ? ` (did you mean --${meant}?)` : ""}`;
    }
  }
  const flag = /'(-{1,2}[^' ]+)/.exec(err.message)?.[1];
  if (!flag) return err.message;
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const meant = flag.startsWith("--") ? closest(flag.slice(2).split("=")[0]!, flags) : undefined;
    return `unknown flag ${flag}${meant ? ` (did you mean --${meant}?)` : ""}`;
  }
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE")
    return /does not take an argument/.test(err.message) ? `${flag} takes no value` : `${flag} needs a value`;
  return err.message;
}

/** The first argument before `--` that is a cluster of short flags (`-data`) holding `letter`. */
function shortCluster(args: readonly string[], letter: string): string | undefined {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).find((a) => /^-[^-]/.test(a) && a.slice(1).split("=")[0]!.includes(letter));
}

/**
 * A flag that takes one value, given twice with different values (`--port 1 --port 2`), is an
 * error rather than the last one silently winning: the user meant one of them, and a command
 * that writes keys or data must not guess which. The same value twice is harmless and allowed.
 */
function refuseConflictingRepeats(tokens: ReturnType<typeof parseArgs>["tokens"], options: Record<string, { type: string; multiple?: boolean }>): void {
  const seen = new Map<string, string | undefined>();
  for (const t of tokens ?? []) {
    if (t.kind !== "option" || options[t.name]?.multiple) continue;
    // The values are not quoted: a token or a passphrase would end up in a CI log.
    if (seen.has(t.name) && seen.get(t.name) !== t.value) throw new Error(`--${t.name} given twice with different values: it takes one`);
    seen.set(t.name, t.value);
  }
}

/**
 * `--token -abc` becomes `--token=-abc`: tokens and other values may start with a
 * dash, which parseArgs would refuse as ambiguous. A following argument that
 * names a known flag is left alone, so a forgotten value still gets an error.
 */
function joinDashValues(argv: string[], options: Record<string, { type: string; short?: string }>): string[] {
  const shorts = new Set(Object.values(options).flatMap((o) => (o.short ? [`-${o.short}`] : [])));
  const isFlag = (a: string) => a === "--" || a === "-h" || shorts.has(a) || (a.startsWith("--") && a.slice(2).split("=")[0]! in options) || a === "--help";
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    if (name && options[name]?.type === "string" && next !== undefined && next.startsWith("-") && !isFlag(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Runs `check`; an error of one of `classes` (a parser's, on input the command checks before any
 * work) becomes a {@link UsageError} (exit 2) with its message after `prefix`, e.g. "--waves: ".
 * Other errors pass through. A `check` that returns a promise (a file the flag names, read) has
 * its rejection turned the same way.
 */
export function asUsage<T>(classes: (new (...args: any[]) => Error)[], check: () => T, prefix = ""): T {
  const usage = (err: unknown) => (classes.some((c) => err instanceof c) ? new UsageError(`${prefix}${(err as Error).message}`) : err);
  try {
    const r = check();
    return (r instanceof Promise ? r.catch((e: unknown) => Promise.reject(usage(e))) : r) as T;
  } catch (err) {
    throw usage(err);
  }
}

/**
 * Bun's fetch errors' generic hints ("Was there a typo in the url or port?", "Is the computer able
 * to access the url?", "The socket connection was closed unexpectedly"): as a cause they only
 * repeat, less clearly, what the wrapper says in words (lib/net/why.ts), so they are left out.
 */
const BUN_FETCH_HINT =
  /^(?:[A-Za-z]+: )?(?:Was there a typo in the url or port\?|Unable to connect\. Is the computer able to access the url\?|The socket connection was closed unexpectedly\.?)$/;

/** Bun's advice to a programmer, appended to its fetch errors: no use to whoever reads fioup's log. */
const BUN_VERBOSE_HINT = /\s*For more information, pass `verbose: true` in the second argument to fetch\(\)\.?/g;

/**
 * "What failed: why" from an error and its causes; a cause its wrapper already quotes is not said
 * twice, nor a file system error its wrapper said in words (`fsWhy`: "no space left on the device",
 * then "ENOSPC: no space left on device, write" again).
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e && i < 5; i++) {
    const message = (e instanceof Error ? e.message : String(e)).replace(BUN_VERBOSE_HINT, "");
    const quoted = (text: string) => parts.some((p) => p.includes(text));
    const saidInWords = i > 0 && (e as NodeJS.ErrnoException).syscall !== undefined && fsWhy(e) !== message && quoted(fsWhy(e));
    if (message && !quoted(message) && !saidInWords && !(i > 0 && BUN_FETCH_HINT.test(message))) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(": ");
}
