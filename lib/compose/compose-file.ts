/**
 * Reading a compose file before publishing: YAML through the `yaml` package
 * (keeping the Document so pinning preserves comments and layout), size-capped,
 * and checked for what publishing needs — a `services` map where every service
 * names an `image` or has a `build` section. Errors name the file and service.
 *
 * @module
 */
import { Document, isMap, parseDocument } from "yaml";
import { MAX_COMPOSE_FILE_BYTES } from "./app-format.ts";

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
}

/** A parsed, validated compose file. */
export interface ComposeFile {
  /** Where it came from, for messages. */
  file: string;
  /** The YAML document (comments preserved); pinning edits a clone of it. */
  doc: Document;
  /** Services in file order. */
  services: ComposeService[];
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
 *   no `services` map, or a service has neither `image` nor `build`.
 */
export function parseCompose(content: string | Uint8Array, file: string): ComposeFile {
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
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, merge: true });
  if (doc.errors.length > 0) {
    throw new ComposeFileError(file, `not valid YAML: ${doc.errors[0]!.message.split("\n")[0]}`);
  }
  if (!isMap(doc.contents)) throw new ComposeFileError(file, "the top level is not a mapping");
  let js: { services?: unknown };
  try {
    // Plain values with anchors, aliases and `<<` merge keys resolved, as compose sees them.
    js = doc.toJS({ maxAliasCount: 1000 }) as { services?: unknown };
  } catch (err) {
    throw new ComposeFileError(file, `not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
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
    const { image, build } = svc as { image?: unknown; build?: unknown };
    if (image !== undefined && image !== null && typeof image !== "string") {
      throw new ComposeFileError(file, "image is not a string", name);
    }
    if (typeof image === "string" && (image.trim() === "" || /\s/.test(image))) {
      throw new ComposeFileError(file, `invalid image reference "${image}"`, name);
    }
    const hasBuild = build !== undefined && build !== null;
    if (!image && !hasBuild) throw new ComposeFileError(file, "needs an image or a build section", name);
    let buildContext: string | undefined;
    if (typeof build === "string") buildContext = build;
    else if (hasBuild && typeof build === "object" && !Array.isArray(build)) {
      const ctx = (build as { context?: unknown }).context;
      if (typeof ctx === "string") buildContext = ctx;
      else if (ctx === undefined) buildContext = ".";
    }
    out.push({
      name,
      ...(typeof image === "string" ? { image } : {}),
      build: hasBuild,
      ...(buildContext !== undefined ? { buildContext } : {}),
    });
  }
  return { file, doc, services: out };
}
