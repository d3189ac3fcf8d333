/**
 * Device registration: trust the gateway CA pinned by
 * the token, make a P-256 key that never leaves the device, send a CSR, and
 * write the certificate, key, CA, TUF root and sota.toml atomically, sota.toml
 * last (its presence with a certificate means "registered").
 *
 * A device that already holds an identity (`--force`, or a registration cut short after its
 * certificate was written) registers again under the same uuid, with a new key, and proves it is
 * that device by making the request over mTLS with its current certificate: the gateway then
 * supersedes the old certificate (refused at once, 403) and the record keeps its labels, tags,
 * groups and rollouts (gateway/routes/register.ts). A new uuid each time, as before, left the old
 * identity registered with a certificate that still worked: a ghost in groups and rollout
 * audiences, and a possibly leaked key valid until someone revoked it by hand. The token alone
 * never takes over a uuid, so only a certificate the gateway still accepts can keep one. When it
 * cannot (the certificate or key lost or damaged, expired, from another CA than the token's, or
 * the gateway answers 409: revoked, or superseded by another registration of that uuid), a new
 * identity is registered as before, and the warning names the old uuid for the admin to revoke.
 *
 * The hardware id decides which targets the device is offered, and nothing says so when it is
 * wrong: a device registered under an id its running target is not for checks, finds no target and
 * reads "No update available" for ever. So on a preloaded device the preloaded target decides: its
 * hardware id is the default, and a --hwid it is not for is refused unless `allowOtherHwid` says the
 * device is to leave that target's line (docs/preload.md).
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import { DEVICE_UUID_PATTERN, RegistrationResponse, subjectCn, type RegistrationRequest } from "../lib/api/index.ts";
import { CaFetchError, fetchPinnedCa, InvalidTokenError, NotAGatewayError } from "../lib/tls/pin.ts";
import { netWhy } from "../lib/net/why.ts";
import { rootSignatureStatus } from "../lib/tuf/root-ceremony.ts";
import { loadX509 } from "../lib/x509/index.ts";
import { toPem } from "../lib/x509/pem.ts";
import { DEFAULT_DEVICE_PATHS, devicePath, trustedRootPath } from "../lib/device/paths.ts";
import { DAEMON_UNIT } from "../lib/device/daemon-unit.ts";
import { mergeToml, parseToml, stringifyToml, type TomlTable } from "../lib/device/sota-toml.ts";
import { UsageError } from "../lib/cli/command.ts";
import { tagList } from "../lib/cli/comma-list.ts";
import { checkGatewayUrl } from "../lib/cli/flag-values.ts";
import { writeFileAtomicSync } from "../lib/fs/atomic-write.ts";
// The one "gateway cannot be reached" error (nothing answers, or what answers serves no CA): exit 31 here.
import { gatewayReason, GatewayUnreachableError } from "../lib/api/admin-client.ts";
import type { PreloadedTarget } from "../lib/device/preloaded-target.ts";
import { FIOUP_VERSION } from "./version.ts";
import { faultPoint } from "./fault.ts";

export class AlreadyRegisteredError extends Error {
  override name = "AlreadyRegisteredError";
  constructor(dir: string) {
    super(`Cannot register: this device is already registered (${dir}/sota.toml); use --force to register again`);
  }
}

export class RegistrationError extends Error {
  override name = "RegistrationError";
}

/**
 * The gateway refused a registration (4xx: it registered nothing), or answered what cannot be
 * used (asked again, it would answer the same): nothing of it is kept here.
 */
class RegistrationRefusedError extends RegistrationError {}

export interface RegisterOptions {
  server: string;
  token: string;
  sotaDir: string;
  name?: string;
  tags?: string[];
  hwid?: string;
  /** The target preload baked into this image, if any: its hardware id is the default, and a --hwid it is not for is refused. */
  preloaded?: PreloadedTarget;
  /** Register with a `hwid` the preloaded target is not for (the device then follows that id's targets). */
  allowOtherHwid?: boolean;
  apps?: string[];
  force?: boolean;
  /** Prefix for system paths (FIOUP_ROOT) used for defaults in sota.toml. */
  root?: string;
  /** Where a warning goes (the gateway decided other tags than --tag). */
  warn?: (line: string) => void;
}

export interface RegisterResult {
  uuid: string;
  name: string;
  hardwareId: string;
  /** Where the hardware id came from when --hwid did not give it: "the preloaded target NAME", or "this machine's architecture". */
  hardwareIdFrom?: string;
  server: string;
  sotaDir: string;
  /** True when the device registered again under the uuid it held: its previous certificate is no longer accepted. */
  reRegistered: boolean;
  /**
   * The identity the device held and could not keep, and why: the admin revokes it (`gateway
   * devices revoke UUID`) if it is still registered. `revoked`: the gateway refused it as revoked
   * already, so there is nothing left to revoke.
   */
  abandoned?: { uuid: string; why: string; revoked: boolean };
}

/** The identity a device holds from an earlier registration: its uuid, and its certificate and key if they can prove it to the gateway. */
interface HeldIdentity {
  uuid: string;
  /** The certificate and key to make the request with; absent when they cannot be used (`unusable` says why). */
  tls?: { cert: string; key: string };
  unusable?: string;
}

/**
 * The identity held in `<sotaDir>` (client.pem's CN), and whether its certificate can prove it to a
 * gateway whose CA is `ca`: a key that belongs to it, issued by that CA, within its validity. The
 * gateway checks all of this too; checked here, so an identity that cannot be kept is known, and said,
 * without a request that must fail.
 *
 * @returns undefined when there is no client.pem, or it is not a device certificate (no uuid to name).
 */
function heldIdentity(sotaDir: string, ca: X509Certificate): HeldIdentity | undefined {
  const now = Date.now();
  let cert: X509Certificate;
  let certPem: string;
  try {
    certPem = readFileSync(join(sotaDir, "client.pem"), "utf8");
    cert = new X509Certificate(certPem);
  } catch {
    return undefined;
  }
  const uuid = subjectCn(cert.subject);
  if (!uuid || !new RegExp(DEVICE_UUID_PATTERN).test(uuid)) return undefined;
  let key: string;
  try {
    key = readFileSync(join(sotaDir, "pkey.pem"), "utf8");
    if (!cert.checkPrivateKey(createPrivateKey(key))) return { uuid, unusable: "pkey.pem is not the key of its certificate" };
  } catch {
    return { uuid, unusable: "its key (pkey.pem) is missing or damaged" };
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return { uuid, unusable: "its certificate is not from this gateway's CA (the token pins another one)" };
  if (Date.parse(cert.validTo) <= now) return { uuid, unusable: `its certificate expired on ${new Date(cert.validTo).toISOString()}` };
  if (Date.parse(cert.validFrom) > now) return { uuid, unusable: `its certificate is not valid before ${new Date(cert.validFrom).toISOString()} (is the clock set?)` };
  return { uuid, tls: { cert: certPem, key } };
}

/** The hardware id fioup assumes without --hwid or a preloaded target: `<arch>-linux`, in targets' spelling. */
const archHwid = () => `${process.arch === "x64" ? "x86_64" : process.arch}-linux`;

/**
 * The hardware id to register with, and where it came from when `hwid` was not given: the
 * preloaded target's (the one it lists, or this machine's `<arch>-linux` if it lists several and
 * that among them), else `<arch>-linux`.
 *
 * @throws {UsageError} `hwid` is one the preloaded target is not for (without `allowOtherHwid`), or
 *   no `hwid` and the preloaded target lists several, none of them `<arch>-linux`.
 */
export function chooseHardwareId(hwid: string | undefined, preloaded: PreloadedTarget | undefined, allowOtherHwid = false): { hwid: string; from?: string } {
  const ids = preloaded?.entry.custom.hardwareIds ?? [];
  if (!preloaded || !ids.length) return hwid !== undefined ? { hwid } : { hwid: archHwid(), from: "this machine's architecture" };
  const from = `the preloaded target ${preloaded.name}`;
  if (hwid !== undefined) {
    if (ids.includes(hwid) || allowOtherHwid) return { hwid };
    throw new UsageError(
      `--hwid ${hwid} is not the hardware id of ${from} (${ids.join(", ")}), which this device runs: registered as ${hwid} it would be offered ` +
        `no update of ${preloaded.name}'s line, and 'fioup check' would say "No update available" for ever. Leave --hwid out (${ids.length === 1 ? ids[0] : "one of them"} is taken), ` +
        `or give --allow-other-hwid if this device is to follow the targets of ${hwid} (its first update then replaces the preloaded apps)`,
    );
  }
  if (ids.length === 1) return { hwid: ids[0]!, from };
  if (ids.includes(archHwid())) return { hwid: archHwid(), from: `${from} (one of ${ids.join(", ")}: this machine's architecture)` };
  throw new UsageError(`${from} is for several hardware ids (${ids.join(", ")}): give this device's with --hwid`);
}

/** True when `<sotaDir>` holds a completed registration. */
export function isRegistered(sotaDir: string): boolean {
  return existsSync(join(sotaDir, "sota.toml")) && existsSync(join(sotaDir, "client.pem"));
}

/**
 * Registers this device with the gateway.
 *
 * @throws {UsageError} If `server` is not an https:// URL.
 * @throws {AlreadyRegisteredError} Without `force` on a registered device.
 * @throws {GatewayUnreachableError} Nothing answers at `server`, or it serves no CA.
 * @throws {RegistrationError} Bad token, CA pin mismatch, or the gateway refused.
 */
export async function register(opts: RegisterOptions): Promise<RegisterResult> {
  if (!opts.force && isRegistered(opts.sotaDir)) throw new AlreadyRegisteredError(opts.sotaDir);
  // Before the gateway is asked: a refusal leaves nothing behind.
  const chosen = chooseHardwareId(opts.hwid, opts.preloaded, opts.allowOtherHwid);
  const hwid = chosen.hwid;
  const server = opts.server.replace(/\/+$/, "");
  checkGatewayUrl("--server", opts.server);
  // Fetch the CA without verification, then trust it only if it matches the token's pin.
  let caPem: string;
  try {
    caPem = await fetchPinnedCa(server, opts.token, { timeoutMs: 30_000 });
  } catch (cause) {
    // The CLI prints the cause chain: "Cannot register: <what>: <why>".
    if (cause instanceof InvalidTokenError) throw new UsageError("the token (--token or FIOUP_TOKEN) is not <secret>.<sha256 of the CA>");
    // Unreachable is the gateway's exit code (31) here as for every other command; a server that
    // answers but is no gateway, or a CA that does not match the pin, is not: retrying will not help.
    if (cause instanceof CaFetchError && !(cause instanceof NotAGatewayError)) throw new GatewayUnreachableError("Cannot register", undefined, { cause });
    throw new RegistrationError("Cannot register", { cause });
  }
  const caCert = new X509Certificate(caPem);
  // The factory CA's subject carries the factory as OU (gateway/pki/ca.ts).
  const factory = /(?:^|\n)OU=([^\n]+)/.exec(caCert.subject)?.[1] ?? "main";

  const name = opts.name ?? hostname();
  const held = heldIdentity(opts.sotaDir, caCert);
  // The folders the pending registration's file made: a refusal, or an answer that cannot be
  // used, leaves nothing behind (sent again, the same answer would come).
  let made: string | undefined;
  const dropPending = () => {
    rmSync(pendingPath(opts.sotaDir), { force: true });
    if (made) rmSync(made, { recursive: true, force: true });
  };
  const unusable = (message: string) => (dropPending(), new RegistrationError(message));
  const pending = async (uuid?: string, notUuid?: string) => {
    const p = await pendingRegistration(opts.sotaDir, uuid, notUuid);
    made ??= p.made;
    return p;
  };
  let kept: Sent | undefined;
  let sent: Sent;
  try {
    kept = held?.tls ? await sendRegistration(server, opts, caPem, factory, { name, hwid, ...(await pending(held.uuid)), tls: held.tls }) : undefined;
    sent = kept && "reply" in kept ? kept : await sendRegistration(server, opts, caPem, factory, { name, hwid, ...(await pending(undefined, held?.uuid)) });
    // A registration left pending whose uuid the gateway will not give this key (revoked, or not
    // this device's after all): a new identity, once.
    if (!("reply" in sent)) {
      rmSync(pendingPath(opts.sotaDir), { force: true });
      sent = await sendRegistration(server, opts, caPem, factory, { name, hwid, ...(await pending()) });
    }
  } catch (e) {
    if (e instanceof RegistrationRefusedError) dropPending();
    throw e;
  }
  const abandoned =
    held && !(kept && "reply" in kept)
      ? { uuid: held.uuid, why: held.unusable ?? `the gateway refused it: ${kept?.conflict}`, revoked: !!kept?.revoked }
      : undefined;
  // A new uuid the gateway holds already: not this device's doing, and not to be retried blindly.
  if (!("reply" in sent)) throw unusable(`Cannot register with ${server}: gateway answered 409: ${sent.conflict}`);
  const { uuid, keys, reply } = sent;
  faultPoint("register:answered"); // power-cut tests: the gateway has registered it, nothing is saved here yet
  if (abandoned)
    opts.warn?.(
      `this device could not keep its identity ${abandoned.uuid}: ${abandoned.why}. It is registered as a new device, ${uuid}. ` +
        (abandoned.revoked
          ? `${abandoned.uuid} stays revoked on the gateway: nothing is left to do for it`
          : `${abandoned.uuid} stays registered with the gateway unless revoked: if no device should hold it any more, revoke it (gateway devices revoke ${abandoned.uuid})`),
    );
  // Nothing is written before the answer is known to be usable: a device left with a certificate
  // it cannot use, or a root it cannot verify with, would fail every later command.
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(reply.certificate);
  } catch {
    throw unusable(`Cannot register with ${server}: the certificate in the answer is not a PEM certificate`);
  }
  if (!cert.subject.split("\n").includes(`CN=${uuid}`)) throw unusable(`Cannot register: the certificate is not for ${uuid} (${cert.subject})`);
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) {
    throw unusable(`Cannot register with ${server}: the certificate in the answer is not signed by the gateway's CA (${caCert.subject.replace(/\n/g, ", ")})`);
  }
  let rootOk = false;
  try {
    rootOk = rootSignatureStatus(JSON.stringify(reply.root)).every((s) => s.met);
  } catch {
    // not a TUF root at all: said below
  }
  if (!rootOk) throw unusable(`Cannot register with ${server}: the TUF root in the answer is not a root.json signed by its own root keys`);

  let fromGateway: TomlTable = {};
  try {
    fromGateway = parseToml(reply.config, "the gateway's config");
  } catch {
    // a config we cannot read is replaced by ours below
  }
  // Device paths (relative to FIOUP_ROOT), so the device directory can be moved or copied.
  // Blob store and apps roots are left to the config defaults and the image's drop-ins
  // (preload's 50-preload.toml), which sota.toml would otherwise override.
  const sotaDir = devicePath(opts.root ?? "", opts.sotaDir);
  // Where the gateway decides the tags (the token did not let the device choose), the device
  // follows the gateway's, as it does at every check after (fioup/update/gateway-tags.ts): tags
  // it chose itself would select other targets than the gateway and its rollouts count it for.
  const granted = tagList(String((fromGateway.pacman as TomlTable | undefined)?.tags ?? ""));
  let tags = opts.tags;
  if (reply.tagsFromDevice === false && tags?.length && tags.join(",") !== granted.join(",")) {
    if (granted.length) {
      opts.warn?.(`the gateway registered this device with the tags ${granted.join(",")} (its registration token decides them), not --tag ${tags.join(",")}: following the gateway's`);
      tags = granted;
    } else {
      // No tags from the gateway would mean every target of the hardware id: the device keeps what was asked.
      opts.warn?.(
        `the registration token gives no tags and does not let devices choose theirs, so the gateway records none for this device: it follows --tag ${tags.join(",")} here, but rollouts by tag do not count it until 'gateway devices tag' sets its tags`,
      );
    }
  }
  const local: TomlTable = {
    tls: { server },
    import: { base_path: sotaDir, tls_cacert_path: "root.crt", tls_clientcert_path: "client.pem", tls_pkey_path: "pkey.pem" },
    provision: { primary_ecu_hardware_id: hwid },
    storage: { path: sotaDir },
    pacman: {
      ...(tags?.length ? { tags: tags.join(",") } : {}),
      ...(opts.apps?.length ? { compose_apps: opts.apps.join(",") } : {}),
    },
  };
  const merged = mergeToml(fromGateway, local);
  if (!tags?.length && merged.pacman && (merged.pacman as TomlTable).tags === undefined) (merged.pacman as TomlTable).tags = "";
  const sotaToml = `# Written by fioup register on ${new Date().toISOString()} for device ${uuid}\n` + stringifyToml(merged);

  mkdirSync(opts.sotaDir, { recursive: true, mode: 0o700 });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  writeFileAtomicSync(join(opts.sotaDir, "pkey.pem"), toPem(pkcs8, "PRIVATE KEY"), { mode: 0o600 });
  writeFileAtomicSync(join(opts.sotaDir, "client.pem"), reply.certificate);
  writeFileAtomicSync(join(opts.sotaDir, "root.crt"), caPem);
  // A new trust anchor: metadata trusted under an older root must not survive.
  rmSync(join(opts.sotaDir, "tuf"), { recursive: true, force: true });
  writeFileAtomicSync(trustedRootPath(opts.sotaDir), JSON.stringify(reply.root));
  writeFileAtomicSync(join(opts.sotaDir, "sota.toml"), sotaToml);
  rmSync(pendingPath(opts.sotaDir), { force: true }); // its answer is saved: the next registration is a new one
  return { uuid, name, hardwareId: hwid, ...(chosen.from ? { hardwareIdFrom: chosen.from } : {}), server, sotaDir: opts.sotaDir, reRegistered: uuid === held?.uuid, ...(abandoned ? { abandoned } : {}) };
}

/**
 * After a registration on a device that systemd runs, starts the daemon's unit, so the device polls
 * the gateway from now on and not from its next boot: fioup.service has
 * `ConditionPathExists=/var/sota/sota.toml`, so at the boot before registration systemd skipped it
 * and nothing would start it again. Only for the device's own paths (no FIOUP_ROOT, the default
 * sota dir: what the unit runs with), and only when the unit is enabled (its owner may have
 * disabled it). `restart`: a daemon already running (`register --force`) holds the certificate the
 * gateway now refuses, and must read the new one; one not running is started. `--no-block`: the
 * daemon's first poll does not hold up the register command.
 * A path unit (PathExists=) would do it without this, but would start the daemon again each time
 * someone stops it (`systemctl stop fioup`) while sota.toml exists.
 *
 * @returns What happened, in a line for the user; undefined where systemd does not run this device.
 */
export function startDaemonUnit(root: string, sotaDir: string): string | undefined {
  if (root || sotaDir !== DEFAULT_DEVICE_PATHS.storagePath || !existsSync("/run/systemd/system")) return undefined;
  const enabled = spawnSync("systemctl", ["is-enabled", DAEMON_UNIT], { encoding: "utf8" });
  const state = enabled.stdout?.trim() || enabled.error?.message || "unknown";
  if (enabled.status !== 0 || !state.startsWith("enabled"))
    return `${DAEMON_UNIT} is ${state}, so nothing polls the gateway: updates come only through 'fioup update' run by hand (install and enable lib/device/${DAEMON_UNIT}, docs/preload.md)`;
  const started = spawnSync("systemctl", ["restart", "--no-block", DAEMON_UNIT], { encoding: "utf8" });
  if (started.status !== 0) return `cannot start ${DAEMON_UNIT}: ${started.stderr?.trim() || started.error?.message}; it starts at the next boot`;
  return `started ${DAEMON_UNIT}: the daemon polls the gateway from now on`;
}

/** What one POST /devices gave: the registration, or the gateway's reason why the uuid is not this request's to take (409). */
/** Where a registration sent but not yet answered keeps its uuid and key ({@link pendingRegistration}). */
const pendingPath = (sotaDir: string) => join(sotaDir, "register.pending.json");

/**
 * The uuid and key to register with: those of a registration sent before whose answer never got
 * saved (fioup killed, a power cut, a connection dropped after the gateway committed it), so the
 * gateway knows it for the same registration asked again and neither refuses the uuid nor spends
 * another use of the token; else a new key (and, without `uuid`, a new uuid), kept (0600, beside
 * the key files) before anything is sent. A pending one for another uuid than `uuid`, or for
 * `notUuid` (an identity being given up), is not reused; one for another uuid than `uuid` is not
 * overwritten either (the held uuid's new key is then not kept: its owner's certificate asks for it).
 */
async function pendingRegistration(sotaDir: string, uuid?: string, notUuid?: string): Promise<{ uuid: string; keys: CryptoKeyPair; made?: string }> {
  const ecdsa = { name: "ECDSA", namedCurve: "P-256" };
  // A pending new identity is kept while the held uuid is tried again (`register --force`): if that
  // is refused once more, the new identity is asked again as the same registration, not a third one.
  let keepOther = false;
  try {
    const p = JSON.parse(readFileSync(pendingPath(sotaDir), "utf8")) as { uuid: string; pkcs8: string; spki: string };
    if (p.uuid !== notUuid && new RegExp(DEVICE_UUID_PATTERN).test(p.uuid)) {
      if (uuid === undefined || p.uuid === uuid) {
        const privateKey = await crypto.subtle.importKey("pkcs8", Buffer.from(p.pkcs8, "base64"), ecdsa, true, ["sign"]);
        const publicKey = await crypto.subtle.importKey("spki", Buffer.from(p.spki, "base64"), ecdsa, true, ["verify"]);
        return { uuid: p.uuid, keys: { privateKey, publicKey } };
      }
      keepOther = true;
    }
  } catch {
    // none, or not readable: a new one
  }
  const keys = (await crypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as CryptoKeyPair;
  if (keepOther && uuid !== undefined) return { uuid, keys };
  const chosen = uuid ?? crypto.randomUUID();
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  const spki = Buffer.from(await crypto.subtle.exportKey("spki", keys.publicKey)).toString("base64");
  const made = mkdirSync(sotaDir, { recursive: true, mode: 0o700 });
  writeFileAtomicSync(pendingPath(sotaDir), JSON.stringify({ uuid: chosen, pkcs8, spki }), { mode: 0o600 });
  return { uuid: chosen, keys, ...(made ? { made } : {}) };
}

type Sent = { uuid: string; keys: CryptoKeyPair; reply: RegistrationResponse } | { conflict: string; revoked: boolean };

/**
 * A 409 that refuses a revoked uuid (gateway/routes/register.ts: `device "UUID" was revoked`), told
 * from the other 409s by its words: the answer carries no code, and the advice differs (revoking it
 * again would be a step for nothing).
 */
const REVOKED_REFUSAL = /^Registration refused: device "[^"]+" was revoked$/;

/**
 * One registration request for `uuid` with a new key: over mTLS with `tls` (the held identity's
 * certificate and key) when given, which is how the gateway knows the device owns the uuid.
 *
 * @throws {GatewayUnreachableError} No answer came.
 * @throws {RegistrationError} The gateway refused (other than 409), or its answer is unusable.
 */
async function sendRegistration(
  server: string,
  opts: RegisterOptions,
  caPem: string,
  factory: string,
  id: { name: string; hwid: string; uuid: string; keys: CryptoKeyPair; tls?: { cert: string; key: string } },
): Promise<Sent> {
  const { uuid, keys } = id;
  const x509 = await loadX509();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [uuid] }, { OU: [factory] }],
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  const body: RegistrationRequest = {
    name: id.name,
    uuid,
    csr: csr.toString("pem"),
    "hardware-id": id.hwid,
    ...(opts.tags?.length ? { tags: opts.tags } : {}),
    ...(opts.apps?.length ? { apps: opts.apps } : {}),
  };
  let res: Response;
  try {
    res = await fetch(`${server}/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${opts.token}`, "content-type": "application/json", "user-agent": `fioup/${FIOUP_VERSION}` },
      body: JSON.stringify(body),
      tls: { ca: caPem, ...id.tls },
      signal: AbortSignal.timeout(60_000),
    } as RequestInit);
  } catch (cause) {
    // No cause: its text is Bun's, which netWhy has just put in words.
    throw new GatewayUnreachableError(`Cannot register with ${server}: ${netWhy(cause)}`);
  }
  const text = await res.text();
  if (res.status === 409) {
    const conflict = gatewayReason(text) ?? text.slice(0, 300);
    return { conflict, revoked: REVOKED_REFUSAL.test(conflict) };
  }
  if (!res.ok) {
    // 401: the token itself (unknown, revoked, expired, used up): only a new one helps.
    const next = res.status === 401 ? "; ask the gateway's admin for a new registration token (gateway tokens create)" : "";
    const Err = res.status < 500 ? RegistrationRefusedError : RegistrationError;
    throw new Err(`Cannot register with ${server}: gateway answered ${res.status}: ${gatewayReason(text) ?? text.slice(0, 300)}${next}`);
  }
  let reply: RegistrationResponse;
  try {
    reply = JSON.parse(text);
  } catch {
    throw new RegistrationRefusedError(`Cannot register with ${server}: the answer is not JSON`);
  }
  if (!Value.Check(RegistrationResponse, reply)) {
    const first = [...Value.Errors(RegistrationResponse, reply)][0];
    throw new RegistrationRefusedError(`Cannot register with ${server}: unexpected answer shape${first ? ` (${first.path || "/"}: ${first.message})` : ""}`);
  }
  return { uuid, keys, reply };
}
