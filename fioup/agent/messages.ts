/**
 * The MQTT messages of the Kanto-compatible desired-state protocol, as typebox
 * schemas, and one checked reader: {@link parseMessage} turns the bytes of a
 * message into a typed envelope or throws {@link InvalidMessageError} whose
 * message names the field that is wrong (`payload.domains[0].components[1].config[2].value`).
 *
 * Every incoming message is an envelope `{activityId, timestamp?, payload}`.
 * Kanto drops what it cannot read; this agent refuses the whole message
 * instead, so the back end learns why (IDENTIFICATION_FAILED with the reason).
 *
 * @module
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { describeSchemaProblem } from "../../lib/api/schema-problem.ts";

/** Topics, in and out. */
export const TOPICS = {
  desiredState: "containersupdate/desiredstate",
  command: "containersupdate/desiredstate/command",
  feedback: "containersupdate/desiredstatefeedback",
  currentState: "containersupdate/currentstate",
  currentStateGet: "containersupdate/currentstate/get",
} as const;

/** A message larger than this is refused unread (a desired state of 100 containers is ~50 KiB). */
export const MAX_MESSAGE_BYTES = 1 << 20;

/** The domain of container components: a desired state with any other domain, or two of this one, is refused (identify.ts). */
export const CONTAINERS_DOMAIN = "containers";

const KeyValue = Type.Object({ key: Type.String({ minLength: 1, maxLength: 64 }), value: Type.String({ maxLength: 8192 }) }, { additionalProperties: false });

export const Component = Type.Object(
  {
    // A container name: the engine wants at least two characters ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
    id: Type.String({ pattern: "^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$" }),
    version: Type.Optional(Type.String({ maxLength: 256 })),
    config: Type.Optional(Type.Array(KeyValue, { maxItems: 256 })),
  },
  { additionalProperties: false },
);
export type Component = Static<typeof Component>;

export const Domain = Type.Object(
  {
    id: Type.String({ minLength: 1 }),
    config: Type.Optional(Type.Array(KeyValue, { maxItems: 64 })),
    components: Type.Optional(Type.Array(Component, { maxItems: 1000 })),
  },
  { additionalProperties: false },
);
export type Domain = Static<typeof Domain>;

export const DesiredState = Type.Object(
  {
    baseline: Type.Optional(Type.String()),
    domains: Type.Array(Domain, { maxItems: 16 }),
  },
  { additionalProperties: true },
);
export type DesiredState = Static<typeof DesiredState>;

/** The command flow's steps (only for a desired state that asked for it). */
export const COMMANDS = ["DOWNLOAD", "UPDATE", "ACTIVATE", "ROLLBACK", "CLEANUP"] as const;
export type CommandName = (typeof COMMANDS)[number];

export const CommandPayload = Type.Object(
  {
    baseline: Type.Optional(Type.String()),
    command: Type.Union(COMMANDS.map((c) => Type.Literal(c))),
  },
  { additionalProperties: true },
);
export type CommandPayload = Static<typeof CommandPayload>;

const envelope = <T extends TSchema>(payload: T) =>
  Type.Object(
    {
      activityId: Type.String({ minLength: 1, maxLength: 256 }),
      timestamp: Type.Optional(Type.Number()),
      payload,
    },
    { additionalProperties: true },
  );

export const DesiredStateMessage = envelope(DesiredState);
export const CommandMessage = envelope(CommandPayload);
export const CurrentStateGetMessage = Type.Object(
  { activityId: Type.Optional(Type.String({ maxLength: 256 })), timestamp: Type.Optional(Type.Number()), payload: Type.Optional(Type.Unknown()) },
  { additionalProperties: true },
);

export type DesiredStateMessage = Static<typeof DesiredStateMessage>;
export type CommandMessage = Static<typeof CommandMessage>;
export type CurrentStateGetMessage = Static<typeof CurrentStateGetMessage>;

/** A message that is not what its topic expects; `activityId` is set when it could be read. */
export class InvalidMessageError extends Error {
  override name = "InvalidMessageError";
  constructor(
    message: string,
    readonly activityId?: string,
  ) {
    super(message);
  }
}

/** The activityId of a message that failed validation, if it has a readable one. */
function activityOf(doc: unknown): string | undefined {
  const a = (doc as { activityId?: unknown })?.activityId;
  return typeof a === "string" && a.length > 0 && a.length <= 256 ? a : undefined;
}

/**
 * Parses and validates one message against `schema`.
 *
 * @example
 * ```ts
 * const msg = parseMessage(DesiredStateMessage, bytes);
 * msg.payload.domains[0]?.components?.length;
 * ```
 * @throws {InvalidMessageError} Too large, not JSON, or a field of the wrong type (the message names it).
 */
export function parseMessage<T extends TSchema>(schema: T, bytes: Uint8Array | string): Static<T> {
  const size = typeof bytes === "string" ? Buffer.byteLength(bytes) : bytes.byteLength;
  if (size > MAX_MESSAGE_BYTES) throw new InvalidMessageError(`Cannot read the message: ${size} bytes is more than the ${MAX_MESSAGE_BYTES} allowed`);
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === "string" ? bytes : new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new InvalidMessageError(`Cannot read the message: not JSON (${(err as Error).message})`);
  }
  if (!Value.Check(schema, doc)) {
    // The deepest problem is the most precise (a union reports its own failure first).
    throw new InvalidMessageError(`Cannot read the message: ${describeSchemaProblem(schema, doc, "the message", { deepest: true })}`, activityOf(doc));
  }
  return doc as Static<T>;
}
