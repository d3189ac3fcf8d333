/**
 * The early-start service: a one-shot systemd unit that starts the
 * preloaded compose apps as soon as the container engine is up, only on a
 * device that is not registered yet. Generated rather than shipped as a fixed
 * file so its paths follow the fioup config the image was assembled with.
 *
 * @module
 */
import { DAEMON_UNIT } from "../../lib/device/daemon-unit.ts";
import { DEFAULT_APPS_FILE, DEFAULT_DEVICE_PATHS } from "../../lib/device/paths.ts";

export interface EarlyStartPaths {
  /** fioup's storage.path on the device (sota.toml appears there at registration). */
  storagePath: string;
  /** Where the fioup binary is on the device. */
  fioupBin: string;
  /** The default-apps list, created at run time by the factory's own provisioning. */
  defaultAppsFile: string;
  /** Where the unit's script is installed. */
  scriptPath: string;
}

export const DEFAULT_EARLY_START_PATHS: EarlyStartPaths = {
  storagePath: DEFAULT_DEVICE_PATHS.storagePath,
  fioupBin: "/usr/bin/fioup",
  defaultAppsFile: DEFAULT_APPS_FILE,
  scriptPath: "/usr/bin/compose-apps-early-start",
};

export const UNIT_NAME = "compose-apps-early-start.service";

/** The unit file text. `ConditionPathExists=!` keeps it off registered devices. */
export function earlyStartUnit(p: EarlyStartPaths = DEFAULT_EARLY_START_PATHS): string {
  return `[Unit]
Description=Start preloaded compose apps before the device is registered
After=docker.service
Requires=docker.service
Before=${DAEMON_UNIT}
ConditionPathExists=!${p.storagePath}/sota.toml

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${p.scriptPath}
StandardOutput=journal
StandardError=journal
TimeoutStartSec=15min

[Install]
WantedBy=multi-user.target
`;
}

/**
 * The script the unit runs. fioup does the work (it reads the default-apps file:
 * one name per line or comma-separated, absent = every preloaded app; loads the
 * images from the local store and runs compose, offline); the script only keeps
 * the unit readable and logs to the journal what it decided.
 */
export function earlyStartScript(p: EarlyStartPaths = DEFAULT_EARLY_START_PATHS): string {
  return `#!/bin/sh
# Starts preloaded compose apps on a device that is not registered yet.
set -eu
if [ -e "${p.storagePath}/sota.toml" ]; then
  echo "compose-apps-early-start: device is registered; fioup starts the apps"
  exit 0
fi
if [ -f "${p.defaultAppsFile}" ]; then
  echo "compose-apps-early-start: starting the apps listed in ${p.defaultAppsFile}"
else
  echo "compose-apps-early-start: ${p.defaultAppsFile} absent: starting all preloaded apps"
fi
exec "${p.fioupBin}" early-start --sota-dir "${p.storagePath}"
`;
}
