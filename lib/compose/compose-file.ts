/**
 * Reading a compose file before publishing: YAML through the `yaml` package
 * (keeping the Document so pinning preserves comments and layout), size-capped,
 * and checked for what publishing needs — a `services` map where every service
 * names an `image` or has a `build` section. Errors name the file and service.
 * `extends` is not followed (what a service takes from another stays unseen,
 * so nothing could check or pin it): a service that needs it for its image or
 * build is refused here, saying to write the service out. `env_file` entries
 * are read so publish can check they are files the bundle holds.
 * At publish time (with `variables`) a top-level `include:` is refused: the
 * files it names bring services publish never sees, so nothing would pin their
 * images and the device's compose would pull them from their registries,
 * outside the signed update (or fail offline). The device reads files without it.
 * At publish time variables are interpolated first (see interpolate.ts), so
 * what is checked, pinned and shipped is what will run.
 *
 * @module
 */
import { Document, isMap, LineCounter, parseDocument, visit } from "yaml";
import { MAX_COMPOSE_FILE_BYTES } from "./app-format.ts";
import { interpolateString, type VariableLookup } from "./interpolate.ts";
import { closest } from "../cli/suggest.ts";

export class ComposeFileError extends Error {
  override name = "ComposeFileError";
  constructor(
    readonly file: string,
    reason: string,
    readonly service?: string,
  ) {
    super(`Invalid compose file ${file}${service ? `, service "${service}"` : ""}: ${reason}`);
  }
}

/** What publishing needs to know about one service. */
export interface ComposeService {
  name: string;
  /** The `image:` value, as written. */
  image?: string;
  /** Whether the service has a `build:` section (dropped when pinning). */
  build: boolean;
  /** The build context when `build:` is a string or has `context:` (relative to the app dir). */
  buildContext?: string;
  /** `build.dockerfile` (relative to the context), if set. */
  dockerfile?: string;
  /** `build.target`, if set. */
  buildTarget?: string;
  /** `build.args` as a map (a list of `K=V` is converted; a bare `K` takes the variable's value). */
  buildArgs?: Record<string, string>;
  /** `env_file` entries in order, each path as written (relative to the compose file's folder); `required` false only when it says so. */
  envFiles?: EnvFile[];
  /** `pull_policy:` as written (pinning drops it: the device loads the pinned image, never pulls). */
  pullPolicy?: string;
  /** Whether the service has an `extends:` key (never followed: see the module doc). */
  extends?: true;
  /** Host paths of bind mounts written relative to the compose file's folder (`./data:/data`, `type: bind` with such a `source`, or a named volume bound to such a `device`), as written. */
  bindSources?: string[];
  /** The `configs:` and `secrets:` a service uses whose top-level entry is a `file:` written relative to the compose file's folder (compose mounts that host file). */
  fileSources?: FileSource[];
}

/** A config or secret a service mounts from a host file written relative (`configs: {app_conf: {file: ./app.conf}}`). */
export interface FileSource {
  kind: "config" | "secret";
  name: string;
  file: string;
}

/** One `env_file` entry: `env_file: a.env`, a list of paths, or a list of `{path, required}`. */
export interface EnvFile {
  path: string;
  required: boolean;
}

/** The reason a service with `extends:` is refused, for the parser and for publish's own check. */
export const EXTENDS_NOT_SUPPORTED =
  "extends is not supported: nothing follows it to check and pin what the service takes from the other one; write the service out in full (its image or build, and the keys it would inherit)";

/** The reason a file with a top-level `include:` is refused at publish. */
export const INCLUDE_NOT_SUPPORTED =
  "include is not supported: the services of the files it names are never pinned, so the device's compose would pull their images from their registries, outside the signed update (or fail offline); write those services into this file instead";

/** A parsed, validated compose file. */
export interface ComposeFile {
  /** Where it came from, for messages. */
  file: string;
  /** The YAML document (comments preserved); pinning edits a clone of it. */
  doc: Document;
  /** Services in file order. */
  services: ComposeService[];
  /** True when variables were interpolated: the pinned text then escapes `$` as `$$`. */
  interpolated: boolean;
}

/** Options of {@link parseCompose}. */
export interface ParseComposeOptions {
  /** Interpolate `${VAR}`... in every string value first, with these variables (publish time only; a top-level `include:` is then refused). */
  variables?: VariableLookup;
}

const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]*$/;

/**
 * Parses and validates a compose file.
 *
 * @example
 * ```ts
 * const c = parseCompose("services:\n  web:\n    image: nginx:alpine\n", "httpd/docker-compose.yml");
 * c.services[0]; // { name: "web", image: "nginx:alpine", build: false }
 * ```
 * @throws {ComposeFileError} If the file is over 1 MiB, is not valid YAML, has
 *   no `services` map, a service has neither `image` nor `build` (saying so of
 *   `extends`, which is not followed), or an `env_file` is not a path or list of them;
 *   with `variables` (publish), also if it has a top-level `include:`.
 * @throws {InterpolationError} With `variables`, if a variable cannot be resolved.
 */
export function parseCompose(content: string | Uint8Array, file: string, opts: ParseComposeOptions = {}): ComposeFile {
  const size = typeof content === "string" ? Buffer.byteLength(content) : content.byteLength;
  if (size > MAX_COMPOSE_FILE_BYTES) {
    throw new ComposeFileError(file, `${size} bytes is over the limit of ${MAX_COMPOSE_FILE_BYTES}`);
  }
  let text: string;
  try {
    text = typeof content === "string" ? content : new TextDecoder("utf-8", { fatal: true }).decode(content);
  } catch {
    throw new ComposeFileError(file, "not UTF-8 text");
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, merge: true, lineCounter });
  if (doc.errors.length > 0) {
    // The yaml package's first line ends "at line 4, column 1:" before a snippet of the file: the line and column are the message.
    throw new ComposeFileError(file, `not valid YAML: ${doc.errors[0]!.message.split("\n")[0]!.replace(/:$/, "")}`);
  }
  if (!isMap(doc.contents)) throw new ComposeFileError(file, "the top level is not a mapping");
  if (opts.variables) {
    const lookup = opts.variables;
    // Values only, never keys, as compose does.
    visit(doc, {
      Scalar(key, node) {
        if (key === "key" || typeof node.value !== "string" || !node.value.includes("$")) return;
        const line = node.range ? lineCounter.linePos(node.range[0]).line : undefined;
        node.value = interpolateString(node.value, lookup, { file, ...(line !== undefined ? { line } : {}) });
      },
    });
  }
  let js: { services?: unknown };
  try {
    // Plain values with anchors, aliases and `<<` merge keys resolved, as compose sees them.
    js = doc.toJS({ maxAliasCount: 1000 }) as { services?: unknown };
  } catch (err) {
    throw new ComposeFileError(file, `not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (opts.variables && doc.has("include")) throw new ComposeFileError(file, INCLUDE_NOT_SUPPORTED);
  const services = js.services;
  if (services === undefined || services === null) throw new ComposeFileError(file, "no services section");
  if (typeof services !== "object" || Array.isArray(services) || !isMap(doc.get("services"))) {
    throw new ComposeFileError(file, "services is not a mapping");
  }
  const entries = Object.entries(services as Record<string, unknown>);
  if (entries.length === 0) throw new ComposeFileError(file, "services is empty");

  const out: ComposeService[] = [];
  for (const [name, svc] of entries) {
    if (!SERVICE_NAME.test(name)) throw new ComposeFileError(file, "invalid service name", name);
    if (!svc || typeof svc !== "object" || Array.isArray(svc) || !isMap(doc.getIn(["services", name]))) {
      throw new ComposeFileError(file, "the service is not a mapping", name);
    }
    const { image, build, extends: ext, env_file: envFile, volumes, configs, secrets, pull_policy: pullPolicy } = svc as {
      image?: unknown;
      pull_policy?: unknown;
      build?: unknown;
      extends?: unknown;
      env_file?: unknown;
      volumes?: unknown;
      configs?: unknown;
      secrets?: unknown;
    };
    if (image !== undefined && image !== null && typeof image !== "string") {
      throw new ComposeFileError(file, "image is not a string", name);
    }
    if (typeof image === "string" && (image.trim() === "" || /\s/.test(image))) {
      throw new ComposeFileError(file, `invalid image reference "${image}"`, name);
    }
    const hasBuild = build !== undefined && build !== null;
    const hasExtends = ext !== undefined && ext !== null;
    if (!image && !hasBuild && hasExtends) throw new ComposeFileError(file, EXTENDS_NOT_SUPPORTED, name);
    if (!image && !hasBuild) {
      // A misspelt key ("imgae:") is the likely cause: name it.
      const meant = Object.keys(svc).map((k) => [k, closest(k, ["image", "build"])] as const).find(([, m]) => m !== undefined);
      throw new ComposeFileError(file, `needs an image or a build section${meant ? ` (is "${meant[0]}" meant to be ${meant[1]}?)` : ""}`, name);
    }
    let buildContext: string | undefined;
    let details: Pick<ComposeService, "dockerfile" | "buildTarget" | "buildArgs"> = {};
    if (typeof build === "string") buildContext = build;
    else if (hasBuild && typeof build === "object" && !Array.isArray(build)) {
      const b = build as { context?: unknown; dockerfile?: unknown; target?: unknown; args?: unknown };
      if (typeof b.context === "string") buildContext = b.context;
      else if (b.context === undefined) buildContext = ".";
      details = buildDetails(b, file, name, opts.variables);
    }
    const binds = relativeBinds(volumes, (js as { volumes?: unknown }).volumes);
    const files = [
      ...relativeFiles("config", configs, (js as { configs?: unknown }).configs),
      ...relativeFiles("secret", secrets, (js as { secrets?: unknown }).secrets),
    ];
    out.push({
      name,
      ...(typeof image === "string" ? { image } : {}),
      build: hasBuild,
      ...(buildContext !== undefined ? { buildContext } : {}),
      ...details,
      ...(envFile !== undefined && envFile !== null ? { envFiles: envFiles(envFile, file, name) } : {}),
      ...(pullPolicy !== undefined && pullPolicy !== null ? { pullPolicy: String(pullPolicy) } : {}),
      ...(hasExtends ? { extends: true as const } : {}),
      ...(binds.length > 0 ? { bindSources: binds } : {}),
      ...(files.length > 0 ? { fileSources: files } : {}),
    });
  }
  return { file, doc, services: out, interpolated: opts.variables !== undefined };
}

/**
 * The host paths of a service's bind mounts that compose resolves from the compose file's folder:
 * a short `SOURCE:TARGET[:MODE]` whose source starts with `.` (any other source is an absolute or
 * home path, or a named volume), a long `type: bind` whose `source` is neither absolute nor `~`,
 * and a named volume (short, or `type: volume`) that the top-level `volumes:` makes a bind of a
 * relative folder (`driver_opts: {o: bind, device: ../x}`, which compose resolves the same way).
 */
function relativeBinds(volumes: unknown, topVolumes: unknown): string[] {
  if (!Array.isArray(volumes)) return [];
  const relative = (p: unknown): p is string => typeof p === "string" && p !== "" && !p.startsWith("/") && !p.startsWith("~");
  const boundDevice = (name: string): string | undefined => {
    const vol = topVolumes && typeof topVolumes === "object" ? (topVolumes as Record<string, unknown>)[name] : undefined;
    if (!vol || typeof vol !== "object") return undefined;
    const { driver, driver_opts: opts } = vol as { driver?: unknown; driver_opts?: unknown };
    if ((driver !== undefined && driver !== "local") || !opts || typeof opts !== "object") return undefined;
    const { o, device } = opts as { o?: unknown; device?: unknown };
    return typeof o === "string" && o.split(",").includes("bind") && relative(device) ? device : undefined;
  };
  const out: string[] = [];
  for (const v of volumes) {
    if (typeof v === "string") {
      const colon = v.indexOf(":");
      if (colon <= 0) continue;
      const source = v.slice(0, colon);
      const device = source.startsWith(".") ? source : boundDevice(source);
      if (device !== undefined) out.push(device);
    } else if (v && typeof v === "object" && !Array.isArray(v)) {
      const { type, source } = v as { type?: unknown; source?: unknown };
      if (type === "bind" && relative(source)) out.push(source);
      const device = type === "volume" && typeof source === "string" ? boundDevice(source) : undefined;
      if (device !== undefined) out.push(device);
    }
  }
  return out;
}

/**
 * The configs (or secrets) a service uses, short (`- name`) or long (`- source: name`), whose
 * top-level entry mounts a host file written relative (`file: ./x`; compose resolves it from the
 * compose file's folder, as a bind mount's source). Absolute and `~` paths, and entries made from
 * `content:` or `environment:`, are the device's own or none.
 */
function relativeFiles(kind: FileSource["kind"], used: unknown, top: unknown): FileSource[] {
  if (!Array.isArray(used) || !top || typeof top !== "object") return [];
  const out: FileSource[] = [];
  for (const u of used) {
    const name = typeof u === "string" ? u : u && typeof u === "object" ? (u as { source?: unknown }).source : undefined;
    if (typeof name !== "string") continue;
    const entry = (top as Record<string, unknown>)[name];
    const file = entry && typeof entry === "object" ? (entry as { file?: unknown }).file : undefined;
    if (typeof file === "string" && file !== "" && !file.startsWith("/") && !file.startsWith("~")) out.push({ kind, name, file });
  }
  return out;
}

/** `env_file` as compose reads it: a path, or a list of paths and `{path, required}` entries. */
function envFiles(value: unknown, file: string, service: string): EnvFile[] {
  const bad = () => new ComposeFileError(file, "env_file is neither a file name nor a list of file names or {path, required} entries", service);
  const one = (v: unknown): EnvFile => {
    if (typeof v === "string" && v !== "") return { path: v, required: true };
    if (!v || typeof v !== "object" || Array.isArray(v)) throw bad();
    const { path, required } = v as { path?: unknown; required?: unknown };
    if (typeof path !== "string" || path === "" || (required !== undefined && typeof required !== "boolean")) throw bad();
    return { path, required: required !== false };
  };
  return Array.isArray(value) ? value.map(one) : [one(value)];
}

/** `dockerfile`, `target` and `args` of a long-form `build:`. */
function buildDetails(
  b: { dockerfile?: unknown; target?: unknown; args?: unknown },
  file: string,
  service: string,
  variables: VariableLookup | undefined,
): Pick<ComposeService, "dockerfile" | "buildTarget" | "buildArgs"> {
  const out: Pick<ComposeService, "dockerfile" | "buildTarget" | "buildArgs"> = {};
  if (b.dockerfile !== undefined) {
    if (typeof b.dockerfile !== "string" || !b.dockerfile) throw new ComposeFileError(file, "build.dockerfile is not a file name", service);
    out.dockerfile = b.dockerfile;
  }
  if (b.target !== undefined) {
    if (typeof b.target !== "string" || !b.target) throw new ComposeFileError(file, "build.target is not a stage name", service);
    out.buildTarget = b.target;
  }
  if (b.args !== undefined && b.args !== null) {
    const args: Record<string, string> = {};
    if (Array.isArray(b.args)) {
      for (const a of b.args) {
        if (typeof a !== "string") throw new ComposeFileError(file, "build.args has an entry that is not KEY=VALUE", service);
        const i = a.indexOf("=");
        const k = i < 0 ? a : a.slice(0, i);
        const v = i < 0 ? variables?.(k) : a.slice(i + 1);
        if (v !== undefined) args[k] = v;
      }
    } else if (typeof b.args === "object") {
      for (const [k, v] of Object.entries(b.args as Record<string, unknown>)) {
        if (v === null || v === undefined) {
          const fromEnv = variables?.(k);
          if (fromEnv !== undefined) args[k] = fromEnv;
        } else if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") args[k] = String(v);
        else throw new ComposeFileError(file, `build.args.${k} is not a scalar`, service);
      }
    } else throw new ComposeFileError(file, "build.args is neither a map nor a list", service);
    out.buildArgs = args;
  }
  return out;
}
