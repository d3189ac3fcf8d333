/**
 * Tokens for an external registry. Large installs keep blobs in a registry built for that
 * (CNCF distribution, the docker-registry package, storing in S3, GCS or Azure) and let the
 * gateway decide who may do what: the registry's `auth: token:` section names the gateway's
 * `/token` as its realm, and verifies the JSON Web Tokens the gateway signs with this key.
 *
 * The signing key is its own (DATA/pki/registry-token.key, with a self-signed certificate in
 * DATA/pki/registry-token.pem that goes into the registry's `rootcertbundle`), never the factory
 * CA: the registry accepts any token whose `x5c` chain ends in its bundle, and every device holds
 * a certificate issued by the factory CA, so a CA in the bundle would let a device sign its own
 * tokens. ES256, the `x5c` header, and the claims distribution checks (iss, aud = the registry's
 * `service`, exp, nbf, access).
 *
 * Replicas must sign with one key (the registry's bundle names one certificate), yet the key is
 * made on first use, which may come after the data dir was copied to each replica. So a replica
 * claims its key in the database it shares with the others (ota/key-handoff.ts, sealed with the
 * factory CA): the first claim wins, and a replica holding another key takes the shared one.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { generateKeyPair, privateKeyFromPem, privateKeyToPem, randomSerial, SIGN_ALG } from "../pki/keys.ts";
import { x509 } from "../../lib/x509/eager.ts";
import type { TokenClaims } from "./token.ts";

const DAY = 86_400_000;

export class RegistryJwtSigner {
  private constructor(
    private readonly key: CryptoKey,
    /** The certificate for the registry's `auth.token.rootcertbundle`. */
    readonly certPem: string,
    private readonly x5c: string,
    /** `iss` of every token: the registry's `auth.token.issuer` must equal it. */
    readonly issuer: string,
  ) {}

  /**
   * Loads DIR/registry-token.{key,pem}, creating them on first use. With `shared` (replicas on
   * one database) the pair the first replica claimed wins: a replica whose files hold another is
   * given the shared pair, and `onReplaced` says so (its old certificate no longer signs).
   */
  static async open(
    pkiDir: string,
    factory: string,
    shared?: { claim(name: string, value: string): Promise<string> },
    onReplaced?: (certPath: string) => void,
  ): Promise<RegistryJwtSigner> {
    const keyPath = join(pkiDir, "registry-token.key");
    const certPath = join(pkiDir, "registry-token.pem");
    const [keyPem, certPem] = await Promise.all([readFile(keyPath, "utf8").catch(() => undefined), readFile(certPath, "utf8").catch(() => undefined)]);
    const local = keyPem && certPem ? { key: keyPem, cert: certPem } : undefined;
    let pair = local ?? (await newPair(factory));
    if (shared) {
      const won = JSON.parse(await shared.claim("registry-token-key", JSON.stringify(pair))) as typeof pair;
      if (won.cert !== pair.cert) {
        if (local) onReplaced?.(certPath);
        pair = won;
      }
    }
    if (pair !== local) {
      await writeFileAtomic(keyPath, pair.key, { mode: 0o600 });
      await writeFileAtomic(certPath, pair.cert);
    }
    const cert = new x509.X509Certificate(pair.cert);
    return new RegistryJwtSigner(await privateKeyFromPem(pair.key), pair.cert, Buffer.from(cert.rawData).toString("base64"), `${factory}-gateway`);
  }

  /** A compact JWS (ES256) of `claims` for the registry whose `service` is `claims.aud`. */
  async sign(claims: TokenClaims): Promise<string> {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const header = b64({ typ: "JWT", alg: "ES256", x5c: [this.x5c] });
    const payload = b64({ iss: this.issuer, sub: claims.sub, aud: claims.aud, iat: claims.iat, nbf: claims.iat - 5, exp: claims.exp, jti: crypto.randomUUID(), access: claims.access });
    // WebCrypto's ECDSA signature is already r || s, the form JWS wants.
    const sig = await crypto.subtle.sign(SIGN_ALG, this.key, new TextEncoder().encode(`${header}.${payload}`));
    return `${header}.${payload}.${Buffer.from(sig).toString("base64url")}`;
  }
}

/** A new signing key (PKCS#8 PEM) and its self-signed certificate (PEM). */
async function newPair(factory: string): Promise<{ key: string; cert: string }> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`${factory} registry token signer`] }, { O: ["compose-ota"] }],
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 20 * 365 * DAY),
    signingAlgorithm: SIGN_ALG,
    keys,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  return { key: await privateKeyToPem(keys.privateKey), cert: cert.toString("pem") + "\n" };
}
