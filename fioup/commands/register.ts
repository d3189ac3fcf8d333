import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { configLocation, loadConfig } from "../config.ts";
import { converge, describeConverge } from "../converge.ts";
import { register, startDaemonUnit } from "../register.ts";
import { currentTarget, preloadedTargetFile } from "../update/current-target.ts";
import { shortlistNotIn } from "../update/check-step.ts";
import { openSession } from "../session.ts";
import { sotaDirFlag } from "./_flags.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";
import { AppName, HardwareId, Tag } from "../../lib/api/target.ts";
import { commaList, tagList } from "../../lib/cli/comma-list.ts";
import { RegistrationRequest } from "../../lib/api/device.ts";
import { DAEMON_UNIT } from "../../lib/device/daemon-unit.ts";

/** The gateway's rule for a device name (lib/api/device.ts), in words. */
const DeviceName = { ...RegistrationRequest.properties.name, expected: "a device name (1-128 characters)" };

export default defineCommand({
  summary: "Register this device with a gateway (writes sota.toml, client.pem, pkey.pem, root.crt, the TUF root)",
  description:
    "The token is <secret>.<sha256 of the gateway CA>: the CA is fetched from the server, checked against the pin and then trusted alone.\nThe private key is made here and never leaves the device.\n" +
    "On a preloaded device the shortlisted apps of the preloaded target are then started. --apps is written to sota.toml,\n" +
    "which wins over the image's defaults in /usr/lib/sota/conf.d (preload's list) and loses to /etc/sota/conf.d.\n" +
    "On a preloaded device the hardware id is the preloaded target's, and a --hwid that target is not for is refused (exit 2)\n" +
    "unless --allow-other-hwid: registered under another id, the device is never offered an update of the target it runs.\n" +
    `Where systemd runs the device, ${DAEMON_UNIT} (the daemon) is started once registered, if it is enabled.`,
  flags: {
    server: { type: "string", description: "Gateway URL (https://host:port)", placeholder: "URL" },
    token: { type: "string", description: "Registration token (or $FIOUP_TOKEN)", placeholder: "TOKEN" },
    name: { type: "string", description: "Device name (default: hostname)", placeholder: "NAME", allowEmpty: true },
    tag: { type: "strings", description: "Tag to follow (letters, digits, . _ -; several comma-separated)", placeholder: "TAG" },
    hwid: { type: "string", description: "Hardware id, as targets name it (letters, digits, . _ -; default: the preloaded target's, else <arch>-linux)", placeholder: "HWID" },
    "allow-other-hwid": { type: "boolean", description: "Register with a --hwid the preloaded target is not for: the device follows that id's targets, and its first update replaces the preloaded apps" },
    apps: { type: "string", description: "Comma-separated app shortlist (default: the image's list from preload, else all apps)", placeholder: "A,B", allowEmpty: true },
    force: { type: "boolean", description: "Register again even if already registered: the same uuid with a new key while the gateway still accepts its certificate (the old one then stops working), else a new uuid (the old one is named, to revoke)" },
    ...sotaDirFlag,
    ...formatFlag,
  },
  async run({ flags, out }) {
    const token = flags.token ?? process.env.FIOUP_TOKEN;
    if (!flags.server) throw new UsageError("--server is required");
    if (!token) throw new UsageError("--token (or $FIOUP_TOKEN) is required");
    // A name no target can hold would shortlist nothing, silently.
    const apps = flags.apps === undefined ? undefined : commaList(flags.apps);
    // An empty list would be written as no shortlist, which means every app: the opposite of what was typed.
    if (apps?.length === 0) throw new UsageError(`--apps ${JSON.stringify(flags.apps)} names no app: give at least one (without --apps, every app of the target runs)`);
    checkFlagValues("--apps", AppName, apps ?? []);
    // A tag or hardware id no target can carry would never offer this device an update, silently.
    const tags = tagList(flags.tag);
    checkFlagValues("--tag", Tag, tags);
    checkFlagValues("--hwid", HardwareId, flags.hwid === undefined ? [] : [flags.hwid]);
    // The gateway would refuse it, after the key and the CSR are made: said first.
    checkFlagValues("--name", DeviceName, flags.name === undefined ? [] : [flags.name]);
    const loc = configLocation(flags);
    const r = await register({
      preloaded: preloadedOf(loc),
      allowOtherHwid: flags["allow-other-hwid"],
      server: flags.server,
      token,
      sotaDir: loc.sotaDir,
      root: loc.root,
      name: flags.name,
      tags,
      hwid: flags.hwid,
      apps,
      force: flags.force,
      warn: (line) => void process.stderr.write(`warning: ${line}\n`),
    });
    // A preloaded device runs its shortlist from now on, without waiting for a new target.
    const s = openSession(flags);
    try {
      // The target the device runs (preloaded, or installed before a --force) is known here: a typo in --apps is said now, not at the first update.
      const running = currentTarget(s.cfg, s.db);
      const unknown = running && shortlistNotIn(s.cfg.shortlist, running);
      if (unknown) out.info(unknown);
      out.info(describeConverge(await converge(s, (l) => out.info(l))));
    } catch (e) {
      out.info(`registered, but cannot start the apps yet: ${(e as Error).message} (the daemon retries at its start)`);
    } finally {
      s.close();
    }
    // After the apps are up and the update lock is free: the daemon's first cycle takes it.
    const daemon = startDaemonUnit(loc.root, loc.sotaDir);
    if (daemon) out.info(daemon);
    out.result(r, (x) =>
      (x.reRegistered
        ? `Registered device ${x.uuid} (${x.name}, ${x.hardwareId}) again with ${x.server}, with a new key: its previous certificate is no longer accepted; config in ${x.sotaDir}\n`
        : `Registered device ${x.uuid} (${x.name}, ${x.hardwareId}) with ${x.server}; config in ${x.sotaDir}\n`) +
      (x.hardwareIdFrom ? `Hardware id ${x.hardwareId}, from ${x.hardwareIdFrom} (--hwid gives another)\n` : "") +
      "Next: 'fioup check' lists the targets for this device, 'fioup update' installs the newest, 'fioup daemon' keeps it up to date",
    );
  },
});

/**
 * The preloaded target where the device's config says its storage is. A config that cannot be read
 * stops the session after registration with the reason; here it means no preloaded target.
 */
function preloadedOf(loc: { root: string; sotaDir: string }) {
  try {
    return preloadedTargetFile(loadConfig(loc, () => {}));
  } catch {
    return undefined;
  }
}
