/**
 * The device uuids the admin commands take: `gateway devices` (show, label, tag, revoke), `groups
 * create/add/remove` and `rollouts create --first`. `devices list` shows a device's name and the
 * start of its uuid first, so either is an easy thing to give instead; the gateway's 404 for it
 * ("Device "dev1" not found"), or the uuid shape's words where a list of uuids is checked first,
 * then read as if no such device existed. Here both say which devices the name or uuid prefix
 * matches, in one place for every command that takes a device.
 *
 * @module
 */
import { FleetDeviceList } from "../../lib/api/admin.ts";
import { AdminApiError, type AdminClient } from "../../lib/api/admin-client.ts";
import { DEVICE_UUID_PATTERN, DeviceUuid } from "../../lib/api/device.ts";
import { UsageError } from "../../lib/cli/command.ts";
import { namedFew } from "../../lib/cli/few.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";

const FULL_UUID = new RegExp(DEVICE_UUID_PATTERN);

/** How many matching devices are looked up (and at most named) for the hint. */
const SHOWN = 5;

/** The gateway has no device by the uuid given, which was a device's name or the start of its uuid, or nothing at all: says which, and to give the uuid. */
export class DeviceArgNotFoundError extends AdminApiError {
  override name = "DeviceArgNotFoundError";
  constructor(notFound: AdminApiError, hint: string) {
    super(`${notFound.message}: ${hint}`, notFound.status, { cause: notFound, ...(notFound.reason === undefined ? {} : { reason: notFound.reason }) });
  }
}

/**
 * `call(arg)`, the command's request on the device `arg` names; a 404 for an `arg` that is no
 * full uuid says what it matches (a device's name, the start of uuids), or where uuids are shown.
 *
 * @throws {DeviceArgNotFoundError} The gateway answered 404 and `arg` is no full uuid.
 */
export async function onDevice<T>(client: AdminClient, arg: string, call: (uuid: string) => Promise<T>): Promise<T> {
  try {
    return await call(arg);
  } catch (e) {
    if (!(e instanceof AdminApiError) || e.status !== 404 || FULL_UUID.test(arg)) throw e;
    throw new DeviceArgNotFoundError(e, await matchesOf(client, arg).catch(() => LIST_HINT));
  }
}

/**
 * Checks the uuids of a device list (`what`: "--first", "device uuid") as checkFlagValues does: bad
 * usage (exit 2) naming the first value that is no uuid. Where that value is a device's name or the
 * start of its uuid, the message says which device, looked up on the gateway (a read, made only for
 * a value already refused, through `connect`); a gateway that cannot be asked leaves the shape's
 * words alone.
 *
 * @throws {UsageError} A value is no device uuid.
 */
export async function checkDeviceArgs(what: string, values: readonly string[], connect: () => Promise<AdminClient>): Promise<void> {
  try {
    checkFlagValues(what, DeviceUuid, values);
  } catch (e) {
    const bad = values.find((v) => !FULL_UUID.test(v));
    const hint = bad === undefined ? undefined : await connect().then((c) => matchesOf(c, bad)).catch(() => undefined);
    if (hint === undefined || hint === LIST_HINT) throw e;
    throw new UsageError(`${(e as Error).message}: ${hint}`);
  }
}

const LIST_HINT = "give the device's uuid (gateway devices list shows them)";

/** What `arg` matches, in words: the devices named so, or whose uuid starts so (the fleet view's search: part of a name or uuid, any case). */
async function matchesOf(client: AdminClient, arg: string): Promise<string> {
  const q = new URLSearchParams({ q: arg, limit: "100" });
  const { devices } = await client.request(FleetDeviceList, "GET", `/admin/fleet/devices?${q}`);
  const named = devices.filter((d) => d.name === arg).map((d) => d.uuid);
  const started = devices.filter((d) => d.uuid.startsWith(arg.toLowerCase()) && !named.includes(d.uuid)).map((d) => d.uuid);
  const all = [...named, ...started];
  if (!all.length) return LIST_HINT;
  const what = named.length && started.length ? "the name or the start of the uuid of" : named.length ? "the name of" : "the start of the uuid of";
  if (all.length === 1) return `"${arg}" is ${what} ${all[0]}: give that uuid`;
  return `"${arg}" is ${what} ${all.length} devices, ${namedFew(all, SHOWN)}: give the uuid of one`;
}
