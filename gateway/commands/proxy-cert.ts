/**
 * `gateway proxy-cert`: a proxy certificate from the data dir's factory CA, for a proxy that
 * terminates device TLS and connects to the replicas' TLS port. Without one the replicas do not
 * believe the device certificate it forwards in a header (gateway/transport/listen.ts says why).
 * Works on the data dir offline, like `registry gc`: the CA key is read there, nothing is sent.
 *
 * @module
 */
import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { writeNewFilesAtomic } from "../../lib/fs/atomic-write.ts";
import { whyCannotRead, whyFolderNotWritable } from "../../lib/fs/paths.ts";
import { join } from "node:path";
import { readDataDirCa } from "../data-dir.ts";
import { issueProxyCert, PROXY_CERT_DAYS, PROXY_NAME } from "../pki/ca.ts";
import { checkDataFlag } from "./_data-flag.ts";

export default defineCommand({
  summary: "Issue a proxy certificate: the client certificate a TLS-terminating proxy presents to the replicas' TLS port",
  description:
    "Replicas run with --trust-proxy believe a forwarded device certificate header on their TLS port only from a proxy that presents one of these. " +
    "Writes DIR/NAME.crt (the certificate), DIR/NAME.key (its key, mode 0600) and DIR/NAME.pem (both, mode 0600: HAProxy's `crt` on the server line); " +
    "nginx takes NAME.crt and NAME.key (proxy_ssl_certificate, proxy_ssl_certificate_key). Existing files are never overwritten. " +
    "A proxy certificate counts only from a --trust-proxy address and is never a device's. There is no revocation list: to retire one, " +
    "take its proxy's address out of --trust-proxy (or give the proxy a new address), and let it expire (--days). Any replica's data dir will do: they hold one CA.",
  flags: {
    data: { type: "string", description: "Gateway data dir (its factory CA signs the certificate)", placeholder: "DIR" },
    name: { type: "string", description: "The proxy's name: the certificate's CN and the files' names (letters, digits, . _ -)", placeholder: "NAME" },
    out: { type: "string", description: "Folder to write NAME.crt, NAME.key and NAME.pem into (must exist)", placeholder: "DIR" },
    days: { type: "number", description: "Days the certificate is valid; issue a new one before then", default: PROXY_CERT_DAYS, min: 1, max: 20 * 365, placeholder: "N" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.data) throw new UsageError("--data DIR is required");
    if (!flags.name) throw new UsageError("--name NAME is required");
    if (!flags.out) throw new UsageError("--out DIR is required");
    if (!PROXY_NAME.test(flags.name)) throw new UsageError(`--name ${flags.name}: letters, digits, ".", "_" and "-" only, up to 63, starting with a letter or digit`);
    checkDataFlag(flags.data);
    const why = (await whyCannotRead(flags.out, "directory")) ?? (await whyFolderNotWritable(flags.out));
    if (why) throw new UsageError(`--out ${flags.out}: ${why}`);
    const ca = await readDataDirCa(flags.data);
    const issued = await issueProxyCert(ca, flags.name, { validDays: flags.days });
    const files = { cert: join(flags.out, `${flags.name}.crt`), key: join(flags.out, `${flags.name}.key`), pem: join(flags.out, `${flags.name}.pem`) };
    await writeNewFilesAtomic(
      [
        { path: files.cert, data: issued.certPem },
        { path: files.key, data: issued.keyPem, mode: 0o600 },
        { path: files.pem, data: issued.certPem + issued.keyPem, mode: 0o600 },
      ],
      "a proxy's certificate and key are never overwritten: remove them first, or give another --name",
    );
    out.result({ name: flags.name, serial: issued.serial, notAfter: issued.notAfter.toISOString(), ...files }, (r) =>
      `issued proxy certificate ${r.name} (serial ${r.serial}, valid until ${r.notAfter}): ${r.cert}, ${r.key}, and both in ${r.pem} (HAProxy's crt)`,
    );
  },
});
