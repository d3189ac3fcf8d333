/**
 * fioup's daemon unit, one home for both binaries that need it: preload writes it into an image
 * beside /usr/bin/fioup, and `fioup register` starts it by its name once the device is registered
 * (the unit waits for sota.toml). The file sits beside this module and is embedded as text at
 * build (`bun build --compile` bundles text imports), so the image gets exactly the unit fioup
 * is documented with, and neither binary imports the other.
 *
 * @module
 */
import text from "./fioup.service" with { type: "text" };

/** The daemon's unit name, as installed under /etc/systemd/system and as systemctl starts it. */
export const DAEMON_UNIT = "fioup.service";

/** The unit file's text ({@link DAEMON_UNIT}, lib/device/fioup.service). */
export const DAEMON_UNIT_TEXT: string = text;
