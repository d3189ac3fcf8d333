/**
 * The one client of the gateway's admin API, used by the `gateway` admin
 * commands and by `gateway publish`. Every answer is checked against the
 * schema the route validates with (`lib/api/admin.ts`), so a caller gets
 * typed data or an {@link AdminApiError}, never `any`. The files the gateway
 * serves the same tokens outside `/admin` (the TUF metadata under `/repo/`,
 * which `gateway export` and preload read) go the same one way
 * (`AdminClient.file`): one place sends the token, trusts the pinned CA,
 * times out, and words an unanswered request or a refusal.
 *
 * Trust: given only a URL and a token, the client fetches `/ca.pem` through
 * `lib/tls/pin.ts` (with a timeout) and trusts that CA only if it matches the
 * token's pin; or the caller passes the CA it already has.
 *
 * @module
 */
import type { Static, TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { fetchPinnedCa } from "../tls/pin.ts";
import {
  DeviceDetail,
  DeviceList,
  DeviceRow,
  DeviceGroupList,
  GroupDeleted,
  GroupDetail,
  GroupList,
  GroupMembersChanged,
  RolloutDetail,
  RolloutList,
  RootInstalled,
  RotateResult,
  SignedRoot,
  TargetsList,
  TokenCreated,
  TokenList,
  TokenRevoked,
  UpdateList,
  WhoAmI,
  type GroupRequest,
  type RolloutRequest,
  type RotateRequest,
  type TargetsBody,
  type TokenRequest,
} from "./admin.ts";
import { netWhy } from "../net/why.ts";
import { describeSchemaProblem } from "./schema-problem.ts";

/**
 * An admin request failed: `status` is the gateway's HTTP status when it
 * answered, `undefined` when it could not be reached or timed out.
 */
export class AdminApiError extends Error {
  override name = "AdminApiError";
  /** The gateway's own reason for a refusal (the `error` of its JSON answer), when it gave one. */
  readonly reason: string | undefined;
  constructor(
    message: string,
    readonly status?: number,
    options?: ErrorOptions & { reason?: string },
  ) {
    super(message, options);
    this.reason = options?.reason;
  }
}

/** The gateway did not answer: connection refused, TLS failure or timeout. */
export class GatewayUnreachableError extends AdminApiError {
  override name = "GatewayUnreachableError";
}

/**
 * The gateway's refusal of a request, in its own words (the `error` of its JSON answer, else the
 * start of the text): "<what>: gateway answered 403: Token refused: unknown token".
 */
export function refusedBy(what: string, res: Response, text: string): AdminApiError {
  const reason = gatewayReason(text);
  return new AdminApiError(`${what}: gateway answered ${res.status}: ${reason ?? (text.slice(0, 200) || res.statusText)}`, res.status, reason === undefined ? {} : { reason });
}

/** The reason in a gateway's JSON error body (`{"error": "..."}`, e.g. why a token was refused), if it has one. */
export function gatewayReason(text: string): string | undefined {
  try {
    const why = (JSON.parse(text) as { error?: unknown } | null)?.error;
    return typeof why === "string" ? why : undefined;
  } catch {
    return undefined;
  }
}

export interface AdminClientOptions {
  /** https://host:port (http:// only for tests and local setups). */
  server: string;
  /** An admin or publish token `<secret>.<CA pin>`. */
  token: string;
  /** PEM CA to trust; default: `/ca.pem` checked against the token's pin. */
  ca?: string;
  /** Per request, including the CA fetch; default 60 s. */
  timeoutMs?: number;
}

export class AdminClient {
  readonly server: string;
  readonly #token: string;
  readonly #ca: string | undefined;
  readonly #timeoutMs: number;

  private constructor(server: string, token: string, ca: string | undefined, timeoutMs: number) {
    this.server = server;
    this.#token = token;
    this.#ca = ca;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * A client for `opts.server`; fetches and pins the CA first unless given.
   *
   * @example
   * ```ts
   * const admin = await AdminClient.connect({ server: "https://127.0.0.1:8443", token });
   * const { devices } = await admin.devices();
   * ```
   * @throws {CaPinMismatchError} If the server's CA does not match the token's pin (lib/tls/pin.ts).
   * @throws {CaFetchError} If `/ca.pem` cannot be fetched (lib/tls/pin.ts).
   * @throws {InvalidTokenError} If the token carries no pin and no CA was given.
   */
  static async connect(opts: AdminClientOptions): Promise<AdminClient> {
    const server = opts.server.replace(/\/+$/, "");
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const https = new URL(server).protocol === "https:";
    const ca = opts.ca ?? (https ? await fetchPinnedCa(server, opts.token, { timeoutMs }) : undefined);
    return new AdminClient(server, opts.token, ca, timeoutMs);
  }

  /** The CA this client trusts (to reuse for the registry on the same host). */
  get ca(): string | undefined {
    return this.#ca;
  }

  /** The token this client sends (to reuse for the registry on the same host, as `gateway export` does). */
  get token(): string {
    return this.#token;
  }

  /**
   * One admin call whose answer must match `schema`; for endpoints without a method below.
   *
   * @throws {GatewayUnreachableError} If the gateway does not answer in time.
   * @throws {AdminApiError} If it refuses (`status` set) or answers another shape.
   */
  async request<S extends TSchema>(schema: S, method: string, path: string, body?: unknown): Promise<Static<S>> {
    const { res, bytes } = await this.#send(method, path, body, `Cannot ${method} ${this.server}${path}`);
    const text = new TextDecoder().decode(bytes);
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) throw refusedBy(`Cannot ${method} ${path}`, res, text);
    if (!Value.Check(schema, json)) {
      throw new AdminApiError(`Cannot ${method} ${path}: unexpected answer (${describeSchemaProblem(schema, json, "the answer")})`, res.status);
    }
    return json as Static<S>;
  }

  /**
   * `GET` a file the gateway serves outside `/admin` to the same tokens (the TUF metadata under
   * `/repo/`, as `gateway export` and preload read it), through the same request path as every
   * admin call: its bytes as served, or undefined when the gateway has no such file (404).
   *
   * @throws {GatewayUnreachableError} If the gateway does not answer in time.
   * @throws {AdminApiError} If it refuses (`status` set; its own words in `reason`).
   */
  async file(path: string): Promise<Uint8Array | undefined> {
    const what = `Cannot fetch ${this.server}${path}`;
    const { res, bytes } = await this.#send("GET", path, undefined, what);
    if (res.status === 404) return undefined;
    if (!res.ok) throw refusedBy(what, res, new TextDecoder().decode(bytes));
    return bytes;
  }

  /** The one way a request leaves: the token, the pinned CA, the timeout; an unanswered one is a {@link GatewayUnreachableError} saying `what` failed. */
  async #send(method: string, path: string, body: unknown, what: string): Promise<{ res: Response; bytes: Uint8Array }> {
    try {
      const res = await fetch(`${this.server}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.#token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(this.#ca ? { tls: { ca: this.#ca } } : {}),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      return { res, bytes: new Uint8Array(await res.arrayBuffer()) };
    } catch (cause) {
      // No cause: its text is Bun's, which netWhy has just put in words.
      throw new GatewayUnreachableError(`${what}: ${netWhy(cause)}`);
    }
  }

  /** `GET /admin/devices` (one page). */
  devices(opts: { limit?: number; after?: string } = {}) {
    const q = new URLSearchParams({ ...(opts.limit ? { limit: String(opts.limit) } : {}), ...(opts.after ? { after: opts.after } : {}) });
    return this.request(DeviceList, "GET", `/admin/devices${q.size ? `?${q}` : ""}`);
  }

  /** `GET /admin/devices/:uuid`: the row with app states and inventory. */
  device(uuid: string) {
    return this.request(DeviceDetail, "GET", `/admin/devices/${encodeURIComponent(uuid)}`);
  }

  /** `GET /admin/devices/:uuid/groups`: every group, and whether the device is in it now. */
  deviceGroups(uuid: string) {
    return this.request(DeviceGroupList, "GET", `/admin/devices/${encodeURIComponent(uuid)}/groups`);
  }

  /** `GET /admin/devices/:uuid/updates` */
  deviceUpdates(uuid: string) {
    return this.request(UpdateList, "GET", `/admin/devices/${encodeURIComponent(uuid)}/updates`);
  }

  /** `POST /admin/devices/:uuid/revoke` */
  revokeDevice(uuid: string) {
    return this.request(DeviceRow, "POST", `/admin/devices/${encodeURIComponent(uuid)}/revoke`);
  }

  /** `PUT /admin/devices/:uuid/tags`: replaces the device's tags. */
  setDeviceTags(uuid: string, tags: string[]) {
    return this.request(DeviceRow, "PUT", `/admin/devices/${encodeURIComponent(uuid)}/tags`, { tags });
  }

  /** `PUT /admin/devices/:uuid/labels`: sets (adds or replaces) and removes labels. */
  setDeviceLabels(uuid: string, change: { set?: Record<string, string>; remove?: string[] }) {
    return this.request(DeviceRow, "PUT", `/admin/devices/${encodeURIComponent(uuid)}/labels`, change);
  }

  /** `GET /admin/groups`: every group with its number of devices. */
  groups() {
    return this.request(GroupList, "GET", "/admin/groups");
  }

  /** `GET /admin/groups/:name`: one page of a static group's members or of a dynamic group's current devices. */
  group(name: string, opts: { limit?: number; after?: string } = {}) {
    const q = new URLSearchParams({ ...(opts.limit ? { limit: String(opts.limit) } : {}), ...(opts.after ? { after: opts.after } : {}) });
    return this.request(GroupDetail, "GET", `/admin/groups/${encodeURIComponent(name)}${q.size ? `?${q}` : ""}`);
  }

  /** `POST /admin/groups`: static (optionally with devices) or dynamic (with a query). */
  createGroup(req: GroupRequest) {
    return this.request(GroupDetail, "POST", "/admin/groups", req);
  }

  /** `POST /admin/groups/:name/members`: static groups only. */
  changeGroupMembers(name: string, change: { add?: string[]; remove?: string[] }) {
    return this.request(GroupMembersChanged, "POST", `/admin/groups/${encodeURIComponent(name)}/members`, change);
  }

  /** `DELETE /admin/groups/:name` */
  deleteGroup(name: string) {
    return this.request(GroupDeleted, "DELETE", `/admin/groups/${encodeURIComponent(name)}`);
  }

  /** `GET /admin/rollouts`: newest first; `active`: running, paused and halted only. */
  rollouts(opts: { active?: boolean; limit?: number } = {}) {
    const q = new URLSearchParams({ ...(opts.active ? { active: "1" } : {}), ...(opts.limit ? { limit: String(opts.limit) } : {}) });
    return this.request(RolloutList, "GET", `/admin/rollouts${q.size ? `?${q}` : ""}`);
  }

  /** `GET /admin/rollouts/:id`: counts per wave and status, holds, failures, recent events. */
  rollout(id: string) {
    return this.request(RolloutDetail, "GET", `/admin/rollouts/${encodeURIComponent(id)}`);
  }

  /** `POST /admin/rollouts` */
  createRollout(req: RolloutRequest) {
    return this.request(RolloutDetail, "POST", "/admin/rollouts", req);
  }

  /** `POST /admin/rollouts/:id/(pause|resume|advance|cancel)` */
  rolloutAction(id: string, action: "pause" | "resume" | "advance" | "cancel") {
    return this.request(RolloutDetail, "POST", `/admin/rollouts/${encodeURIComponent(id)}/${action}`);
  }

  /** `GET /admin/whoami`: the role of this client's token. */
  whoami() {
    return this.request(WhoAmI, "GET", "/admin/whoami");
  }

  /** `GET /admin/targets`: the signed targets.json content. */
  targets() {
    return this.request(TargetsList, "GET", "/admin/targets");
  }

  /**
   * `POST /admin/targets`: adds or replaces these targets in one signed version, all or nothing.
   * With `expectedVersion` (the `version` of the `targets()` they were made from) the gateway
   * answers 409 if another writer signed a version since: read again and retry.
   */
  addTargets(targets: TargetsBody["targets"], expectedVersion?: TargetsBody["expectedVersion"]) {
    return this.request(TargetsList, "POST", "/admin/targets", { targets, ...(expectedVersion === undefined ? {} : { expectedVersion }) });
  }

  /** `DELETE /admin/targets/:name` */
  removeTarget(name: string) {
    return this.request(TargetsList, "DELETE", `/admin/targets/${encodeURIComponent(name)}`);
  }

  /** `POST /admin/tokens`: the secret is in the answer, and nowhere else. */
  createToken(req: TokenRequest) {
    return this.request(TokenCreated, "POST", "/admin/tokens", req);
  }

  /** `GET /admin/tokens`: both kinds, never the secrets. */
  tokens() {
    return this.request(TokenList, "GET", "/admin/tokens");
  }

  /** `POST /admin/tokens/:id/revoke` (a registration or an API token). */
  revokeToken(id: string) {
    return this.request(TokenRevoked, "POST", `/admin/tokens/${encodeURIComponent(id)}/revoke`);
  }

  /** `GET /admin/keys/root`: the current signed root.json. */
  root() {
    return this.request(SignedRoot, "GET", "/admin/keys/root");
  }

  /** `POST /admin/keys/root`: installs a root.json signed offline (docs/keys.md). */
  installRoot(root: SignedRoot) {
    return this.request(RootInstalled, "POST", "/admin/keys/root", root);
  }

  /** `POST /admin/keys/rotate` */
  rotateKey(role: RotateRequest["role"]) {
    return this.request(RotateResult, "POST", "/admin/keys/rotate", { role });
  }
}
