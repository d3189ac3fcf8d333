/**
 * The sota.toml a newly registered device writes (SPEC §4): where the
 * gateway is, its hardware id, tags and app shortlist, and how often to poll.
 *
 * @module
 */
export interface SotaConfig {
  server: string;
  hardwareId: string;
  tags: string[];
  apps?: string[];
  pollingSeconds: number;
}

const str = (v: string) => JSON.stringify(v); // TOML basic strings share JSON's escapes

export function sotaToml(c: SotaConfig): string {
  return [
    "[tls]",
    `server = ${str(c.server)}`,
    'ca_source = "file"',
    'pkey_source = "file"',
    'cert_source = "file"',
    "",
    "[provision]",
    `primary_ecu_hardware_id = ${str(c.hardwareId)}`,
    "",
    "[uptane]",
    `polling_seconds = ${c.pollingSeconds}`,
    "",
    "[pacman]",
    `tags = ${str(c.tags.join(","))}`,
    ...(c.apps ? [`compose_apps = ${str(c.apps.join(","))}`] : []),
    "",
    "[import]",
    'tls_cacert_path = "root.crt"',
    'tls_clientcert_path = "client.pem"',
    'tls_pkey_path = "pkey.pem"',
    "",
  ].join("\n");
}
