/** Registers a device against a real gateway over TLS (POST /devices with an admin token) and returns its HTTPS client. */
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { makeDeviceCsr } from "./_device.ts";
import { post, tlsFetch } from "./_client.ts";

export interface TlsDevice {
  uuid: string;
  cert: string;
  key: string;
  /** `fetch` with the device's certificate, trusting only the gateway CA. */
  fetch: ReturnType<typeof tlsFetch>;
}

export async function registerDevice(url: string, adminToken: string, caPem: string, tags: string[] = ["main"]): Promise<TlsDevice> {
  const k = await makeDeviceCsr();
  const res = await tlsFetch({ ca: caPem })(`${url}/devices`, {
    ...post({ name: "d", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux", tags }),
    headers: { "content-type": "application/json", authorization: `Bearer ${adminToken}` },
  });
  if (res.status !== 201) throw new Error(`Cannot register a test device: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as RegistrationResponse;
  return { uuid: k.uuid, cert: body.certificate, key: k.keyPem, fetch: tlsFetch({ ca: body.ca, cert: body.certificate, key: k.keyPem }) };
}
