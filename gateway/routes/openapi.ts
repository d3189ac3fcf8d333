/** GET /openapi.json: the API described from the same typebox schemas that validate it. */
import { Type, type TSchema } from "@sinclair/typebox";
import { Hono } from "hono";
import pkg from "../../package.json" with { type: "json" };
import {
  AppsStates,
  DeviceInfo,
  EventBatch,
  NetworkInfo,
  RegistrationRequest,
  RegistrationResponse,
  SystemConfig,
  SystemInfo,
} from "../../lib/api/index.ts";
import {
  DeviceDetail,
  DeviceGroupList,
  DeviceLabelsRequest,
  DeviceList,
  DeviceRow,
  DeviceTagsRequest,
  FleetDeviceList,
  FleetSummary,
  GroupDeleted,
  GroupDetail,
  GroupList,
  GroupMembersChanged,
  GroupMembersRequest,
  GroupRequest,
  RolloutDetail,
  RolloutList,
  RolloutRequest,
  RootInstalled,
  RotateRequest,
  SignedRoot,
  TargetsBody,
  TargetsList,
  TokenCreated,
  TokenList,
  TokenRequest,
  TokenRevoked,
  UpdateList,
  WhoAmI,
} from "../../lib/api/admin.ts";
import type { GatewayEnv } from "../env.ts";

type Sec = "device" | "deviceOrToken" | "admin" | "registration" | "none";
interface Op {
  summary: string;
  sec: Sec;
  body?: TSchema;
  res?: TSchema;
  status?: number;
  text?: string;
}

const Error_ = Type.Object({ error: Type.String() });

const OPS: Record<string, Record<string, Op>> = {
  "/healthz": { get: { summary: "Liveness", sec: "none", res: Type.Object({ ok: Type.Boolean(), warnings: Type.Optional(Type.Array(Type.String())) }) } },
  "/metrics": { get: { summary: "Prometheus metrics", sec: "none", text: "text/plain" } },
  "/ca.pem": { get: { summary: "The factory CA certificate", sec: "none", text: "application/x-pem-file" } },
  "/devices": {
    post: { summary: "Register a device", sec: "registration", body: RegistrationRequest, res: RegistrationResponse, status: 201 },
  },
  "/repo/{file}": {
    get: { summary: "TUF metadata (N.root.json, timestamp.json, snapshot.json, targets.json): a device's signed view, or the main chain for an API token", sec: "deviceOrToken", text: "application/json" },
  },
  "/events": { post: { summary: "Post update events", sec: "device", body: EventBatch, res: Type.Object({ received: Type.Integer(), stored: Type.Integer() }) } },
  "/apps-states": { post: { summary: "Report app states", sec: "device", body: AppsStates, status: 204 } },
  "/system_info": { put: { summary: "Hardware inventory", sec: "device", body: SystemInfo, status: 204 } },
  "/system_info/network": { put: { summary: "Network inventory", sec: "device", body: NetworkInfo, status: 204 } },
  "/system_info/config": { put: { summary: "Device configuration", sec: "device", body: SystemConfig, status: 204 } },
  "/device": { get: { summary: "The calling device", sec: "device", res: DeviceInfo } },
  "/admin/devices": { get: { summary: "List devices (?limit, ?after)", sec: "admin", res: DeviceList } },
  "/admin/devices/{uuid}": { get: { summary: "One device with app states and inventory", sec: "admin", res: DeviceDetail } },
  "/admin/devices/{uuid}/updates": { get: { summary: "A device's updates, events grouped by correlation id", sec: "admin", res: UpdateList } },
  "/admin/devices/{uuid}/groups": { get: { summary: "Every group, and whether the device is in it now", sec: "admin", res: DeviceGroupList } },
  "/admin/devices/{uuid}/revoke": { post: { summary: "Revoke a device", sec: "admin", res: DeviceRow } },
  "/admin/devices/{uuid}/tags": { put: { summary: "Set a device's tags", sec: "admin", body: DeviceTagsRequest, res: DeviceRow } },
  "/admin/devices/{uuid}/labels": { put: { summary: "Set and remove a device's labels (key=value)", sec: "admin", body: DeviceLabelsRequest, res: DeviceRow } },
  "/admin/groups": {
    get: { summary: "List device groups with their number of devices (admin or viewer)", sec: "admin", res: GroupList },
    post: { summary: "Create a static group (devices) or a dynamic one (query)", sec: "admin", body: GroupRequest, res: GroupDetail, status: 201 },
  },
  "/admin/groups/{name}": {
    get: { summary: "A group and one page of its members or current devices (?limit, ?after; admin or viewer)", sec: "admin", res: GroupDetail },
    delete: { summary: "Delete a group", sec: "admin", res: GroupDeleted },
  },
  "/admin/groups/{name}/members": { post: { summary: "Add and remove members of a static group", sec: "admin", body: GroupMembersRequest, res: GroupMembersChanged } },
  "/admin/rollouts": {
    get: { summary: "List rollouts, newest first (?active=1, ?limit; admin or viewer)", sec: "admin", res: RolloutList },
    post: { summary: "Start a rollout of a target version to a group or tag in waves", sec: "admin", body: RolloutRequest, res: RolloutDetail, status: 201 },
  },
  "/admin/rollouts/{id}": { get: { summary: "A rollout: counts per wave and status, holds, failures, recent events (admin or viewer)", sec: "admin", res: RolloutDetail } },
  "/admin/rollouts/{id}/pause": { post: { summary: "Pause a rollout (no wave advances; released devices keep the target)", sec: "admin", res: RolloutDetail } },
  "/admin/rollouts/{id}/resume": { post: { summary: "Resume a paused or halted rollout", sec: "admin", res: RolloutDetail } },
  "/admin/rollouts/{id}/advance": { post: { summary: "Release the next wave now (?fromWave=N: only if the rollout is still at wave N, so a repeated request releases no second wave)", sec: "admin", res: RolloutDetail } },
  "/admin/rollouts/{id}/cancel": { post: { summary: "Cancel a rollout: it ends where it stands; devices not yet updated are never offered its version (create a new rollout to ship it)", sec: "admin", res: RolloutDetail } },
  "/admin/targets": {
    get: { summary: "The signed targets", sec: "admin", res: TargetsList },
    post: { summary: "Add or replace targets in one signed version", sec: "admin", body: TargetsBody, res: TargetsList },
  },
  "/admin/targets/{name}": { delete: { summary: "Remove a target", sec: "admin", res: TargetsList } },
  "/admin/whoami": { get: { summary: "The role of the API token that asks (any API token: admin, publish or viewer), the gateway's public URL, and whether it can sign targets now", sec: "admin", res: WhoAmI } },
  "/admin/tokens": {
    get: { summary: "List registration and API tokens", sec: "admin", res: TokenList },
    post: { summary: "Create a registration, publish or admin token", sec: "admin", body: TokenRequest, res: TokenCreated, status: 201 },
  },
  "/admin/fleet/devices": { get: { summary: "A page of devices with their status, filtered and sorted (the dashboard's list; admin or viewer)", sec: "admin", res: FleetDeviceList } },
  "/admin/fleet/summary": { get: { summary: "Devices by status and target, recent failures, check-ins per minute (admin or viewer)", sec: "admin", res: FleetSummary } },
  "/admin/tokens/{id}/revoke": { post: { summary: "Revoke a registration or API token", sec: "admin", res: TokenRevoked } },
  "/admin/keys/rotate": { post: { summary: "Rotate an online TUF key with the root key in the data dir (never root: 403)", sec: "admin", body: RotateRequest } },
  "/admin/keys/root": {
    get: { summary: "The current root.json", sec: "admin" },
    post: { summary: "Install a root.json signed offline (threshold of the current and the new root keys)", sec: "admin", body: SignedRoot, res: RootInstalled },
  },
};

const SECURITY: Record<Sec, unknown[]> = {
  none: [],
  device: [{ clientCertificate: [] }],
  deviceOrToken: [{ clientCertificate: [] }, { adminToken: [] }],
  admin: [{ adminToken: [] }],
  registration: [{ registrationToken: [] }, { adminToken: [] }],
};

/** Typebox schemas are JSON Schema; strip typebox's symbol keys by a JSON round trip. */
const schema = (s: TSchema) => JSON.parse(JSON.stringify(s));

export function openApiDocument() {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, ops] of Object.entries(OPS)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(ops)) {
      const ok = String(op.status ?? 200);
      paths[path][method] = {
        summary: op.summary,
        security: SECURITY[op.sec],
        ...(op.body ? { requestBody: { required: true, content: { "application/json": { schema: schema(op.body) } } } } : {}),
        responses: {
          [ok]: {
            description: "OK",
            ...(op.res ? { content: { "application/json": { schema: schema(op.res) } } } : {}),
            ...(op.text ? { content: { [op.text]: {} } } : {}),
          },
          "4XX": { description: "Client error", content: { "application/json": { schema: schema(Error_) } } },
        },
      };
    }
  }
  return {
    openapi: "3.1.0",
    info: { title: "compose-ota gateway", version: pkg.version },
    components: {
      securitySchemes: {
        clientCertificate: { type: "mutualTLS", description: "Device certificate issued at registration" },
        adminToken: { type: "http", scheme: "bearer", description: "An API token (admin-token, or made by `gateway tokens create`); its role decides what it may do" },
        registrationToken: { type: "http", scheme: "bearer" },
      },
    },
    paths,
  };
}

let cached: string | undefined;
export const openapi = new Hono<GatewayEnv>().get("/openapi.json", (c) =>
  c.body((cached ??= JSON.stringify(openApiDocument())), 200, { "content-type": "application/json" }),
);
