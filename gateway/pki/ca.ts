/**
 * The factory CA: one self-signed ECDSA P-256 certificate that signs the
 * gateway's TLS certificate and every device certificate, so devices need a
 * single trust anchor and the gateway a single client-CA.
 *
 * Nothing it issues outlives it: a certificate whose issuer has ended is refused by whoever
 * checks the chain, so a later end would only be a lie (on /metrics, in the log). The CA's own
 * end is the fleet's: no device accepts the gateway after it, and the gateway no device.
 *
 * @module
 */
import { x509 } from "../../lib/x509/eager.ts";
import type * as X from "@peculiar/x509";
import { derFingerprint } from "../../lib/tls/pin.ts";
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { PROXY_ORGANIZATION, SIGN_ALG, generateKeyPair, normalizeSerial, privateKeyFromPem, privateKeyToPem, randomSerial } from "./keys.ts";

const DAY = 86_400_000;

export interface CertificateAuthority {
  cert: X.X509Certificate;
  certPem: string;
  key: CryptoKey;
  keyPem: string;
  /** sha256 hex of the CA certificate DER: the pin inside every token. */
  fingerprint: string;
}

export class CsrRejectedError extends Error {
  override name = "CsrRejectedError";
}

/** The factory CA has ended: every certificate it signed is refused, and it signs no more. */
export class CaEndedError extends Error {
  override name = "CaEndedError";
  constructor(notAfter: Date) {
    super(`The factory CA ended at ${notAfter.toISOString()}: it issues no certificate, and devices refuse every one it issued (docs/keys.md, "The factory CA")`);
  }
}

export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  return { cert, certPem, key: await privateKeyFromPem(keyPem), keyPem, fingerprint: derFingerprint(cert.rawData) };
}

/** How long a new factory CA is valid: the fleet's lifetime, as nothing renews it (docs/keys.md). */
export const CA_DAYS = 20 * 365;

/** Creates a new factory CA, valid for {@link CA_DAYS} unless `validDays` says otherwise. */
export async function createCa(factory: string, opts: { validDays?: number } = {}): Promise<CertificateAuthority> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`${factory} factory CA`] }, { O: ["compose-ota"] }, { OU: [factory] }],
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + (opts.validDays ?? CA_DAYS) * DAY),
    signingAlgorithm: SIGN_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString("pem") + "\n";
  return { cert, certPem, key: keys.privateKey, keyPem: await privateKeyToPem(keys.privateKey), fingerprint: derFingerprint(cert.rawData) };
}

/**
 * How long the gateway's own TLS certificate is valid, and how much of that must be left for a
 * start to keep it: with less, the start issues a new one (gateway/data-dir.ts), so a gateway
 * restarted at least once a year never serves an expired certificate, which every device would
 * refuse: until the CA's own last year, when it ends with the CA and no restart helps.
 */
export const SERVER_CERT_DAYS = 5 * 365;
export const SERVER_CERT_RENEW_DAYS = 365;

/** Issues the gateway's TLS server certificate for the given host names / IPs. */
export async function issueServerCert(
  ca: CertificateAuthority,
  hosts: string[],
  opts: { validDays?: number } = {},
): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const unique = [...new Set(hosts.filter(Boolean))];
  const { certPem } = await issueLeaf(ca, {
    subject: `CN=${unique[0] ?? "gateway"}`,
    publicKey: keys.publicKey,
    validDays: opts.validDays ?? SERVER_CERT_DAYS,
    usage: x509.ExtendedKeyUsage.serverAuth,
    extensions: [new x509.SubjectAlternativeNameExtension(unique.map((h) => ({ type: isIP(h) ? "ip" : "dns", value: h })))],
  });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey) };
}

/** How long a device certificate is valid: as long as a new CA, so in effect until the CA's end. */
export const DEVICE_CERT_DAYS = CA_DAYS;

/** When a certificate stops being valid. */
export const certificateNotAfter = (certPem: string): Date => new x509.X509Certificate(certPem).notAfter;

/** The hosts (DNS names and IPs) a certificate's SAN covers. */
export function certificateHosts(certPem: string): string[] {
  const san = new x509.X509Certificate(certPem).getExtension(x509.SubjectAlternativeNameExtension);
  return san ? san.names.items.map((n) => n.value) : [];
}

export interface IssuedDeviceCert {
  certPem: string;
  serial: string;
  /** sha256 (hex) of the public key (its SubjectPublicKeyInfo DER) the certificate is for. */
  keySha256: string;
}

/** sha256 (hex) of a public key's SubjectPublicKeyInfo DER: how a device's key is recorded. */
const keySha256Of = (spki: ArrayBuffer) => createHash("sha256").update(new Uint8Array(spki)).digest("hex");

/**
 * The sha256 of the public key a CSR asks a certificate for, read without checking anything else
 * (undefined if it is no CSR): signDeviceCsr checks its signature, which proves the key is held.
 */
export function csrKeySha256(csrPem: string): string | undefined {
  try {
    return keySha256Of(new x509.Pkcs10CertificateRequest(csrPem.trim()).publicKey.rawData);
  } catch {
    return undefined;
  }
}

/**
 * Signs a device CSR: checks its self-signature, that it is ECDSA P-256 and
 * that its CN equals `uuid`; the issued subject is CN=uuid, OU=factory
 * whatever else the CSR asked for.
 */
export async function signDeviceCsr(
  ca: CertificateAuthority,
  csrPem: string,
  opts: { uuid: string; factory: string; validDays?: number },
): Promise<IssuedDeviceCert> {
  let csr: X.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem.trim());
  } catch (cause) {
    throw new CsrRejectedError("Cannot read the CSR: not a PEM PKCS#10 request", { cause });
  }
  if (!(await csr.verify().catch(() => false))) throw new CsrRejectedError("Cannot accept the CSR: its signature does not verify");
  const cn = csr.subjectName.getField("CN")[0];
  if (cn !== opts.uuid) throw new CsrRejectedError(`Cannot accept the CSR: its CN "${cn ?? ""}" is not the device uuid "${opts.uuid}"`);
  const alg = csr.publicKey.algorithm as { name: string; namedCurve?: string };
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256")
    throw new CsrRejectedError("Cannot accept the CSR: the key must be ECDSA P-256");
  const { certPem, serial } = await issueLeaf(ca, {
    subject: new x509.Name([{ CN: [opts.uuid] }, { OU: [opts.factory] }]),
    publicKey: csr.publicKey,
    validDays: opts.validDays ?? DEVICE_CERT_DAYS,
    usage: x509.ExtendedKeyUsage.clientAuth,
  });
  return { certPem, serial, keySha256: keySha256Of(csr.publicKey.rawData) };
}

/** How long a proxy certificate is valid unless `gateway proxy-cert --days` says otherwise. */
export const PROXY_CERT_DAYS = 2 * 365;

/** A proxy's name: a file name and the certificate's CN. */
export const PROXY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * Issues a proxy certificate: the client certificate a TLS-terminating proxy presents on its hop
 * to the replicas' TLS port, without which they do not believe the device certificate it forwards
 * in a header (gateway/transport/listen.ts). Subject CN=name, O={@link PROXY_ORGANIZATION}: the
 * mark keys.ts reads (why there: its module comment). A client certificate (clientAuth), as a
 * proxy presents it; never a device's, whose lookup by it finds none.
 */
export async function issueProxyCert(
  ca: CertificateAuthority,
  name: string,
  opts: { validDays?: number } = {},
): Promise<{ certPem: string; keyPem: string; serial: string; notAfter: Date }> {
  if (!PROXY_NAME.test(name)) throw new RangeError(`Invalid proxy name "${name}": letters, digits, ".", "_" and "-", up to 63, starting with a letter or digit`);
  const keys = await generateKeyPair();
  const { cert, certPem, serial } = await issueLeaf(ca, {
    subject: new x509.Name([{ CN: [name] }, { O: [PROXY_ORGANIZATION] }]),
    publicKey: keys.publicKey,
    validDays: opts.validDays ?? PROXY_CERT_DAYS,
    usage: x509.ExtendedKeyUsage.clientAuth,
  });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey), serial, notAfter: cert.notAfter };
}

/**
 * A certificate the CA signs for one end of a connection (the gateway, a device, a proxy): valid
 * from a day ago (clocks differ) for `validDays` but never past the CA's own end, not a CA, for
 * signatures, with one extended key usage and the CA's key identifier; the kinds differ in
 * subject, key and `extensions`.
 *
 * @throws {CaEndedError} If the CA has ended: anything it signed would be refused.
 */
async function issueLeaf(
  ca: CertificateAuthority,
  leaf: { subject: string | X.Name; publicKey: X.X509CertificateCreateParams["publicKey"]; validDays: number; usage: string; extensions?: X.Extension[] },
): Promise<{ cert: X.X509Certificate; certPem: string; serial: string }> {
  const now = Date.now();
  const caEnd = ca.cert.notAfter.getTime();
  if (caEnd <= now) throw new CaEndedError(ca.cert.notAfter);
  const serial = randomSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: leaf.subject,
    issuer: ca.cert.subject,
    notBefore: new Date(now - DAY),
    notAfter: new Date(Math.min(now + leaf.validDays * DAY, caEnd)),
    signingAlgorithm: SIGN_ALG,
    publicKey: leaf.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([leaf.usage]),
      ...(leaf.extensions ?? []),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
    ],
  });
  return { cert, certPem: cert.toString("pem") + "\n", serial: normalizeSerial(serial) };
}
