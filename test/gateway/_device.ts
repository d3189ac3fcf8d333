/** Test helpers: a device key and CSR made the way fioup makes them (ECDSA P-256, CN=uuid, OU=factory). */
import { x509 } from "../../lib/x509/eager.ts";
import { EC_ALG, SIGN_ALG, privateKeyToPem } from "../../gateway/pki/keys.ts";

export interface TestDeviceKey {
  uuid: string;
  csrPem: string;
  keyPem: string;
}

export async function makeDeviceCsr(uuid: string = crypto.randomUUID(), factory = "main", cn = uuid): Promise<TestDeviceKey> {
  const keys = (await crypto.subtle.generateKey(EC_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([{ CN: [cn] }, { OU: [factory] }]),
    keys,
    signingAlgorithm: SIGN_ALG,
  });
  return { uuid, csrPem: csr.toString("pem"), keyPem: await privateKeyToPem(keys.privateKey) };
}
