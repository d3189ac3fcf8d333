/** Reading back what publish pushed: app manifests, bundles and the signed targets. */
import { gunzipSync } from "node:zlib";
import tar from "tar-stream";
import { parse } from "yaml";
import type { TargetEntry } from "../../lib/api/target.ts";
import type { AppManifest } from "../../lib/compose/app-format.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import type { GatewayHandle } from "./_gateway.ts";

export function gatewayRegistry(gw: GatewayHandle): RegistryClient {
  return new RegistryClient({ registry: gw.host, auth: { token: gw.adminToken }, tls: { ca: gw.caPem } });
}

export async function signedTargets(gw: GatewayHandle): Promise<{ targets: Record<string, TargetEntry>; version: number }> {
  const res = await fetch(`${gw.url}/admin/targets`, { headers: { authorization: `Bearer ${gw.adminToken}` }, tls: { ca: gw.caPem } });
  if (!res.ok) throw new Error(`GET /admin/targets: ${res.status}`);
  return (await res.json()) as { targets: Record<string, TargetEntry>; version: number };
}

export interface FetchedApp {
  manifest: AppManifest;
  bundle: Uint8Array;
  index: Record<string, string>;
  files: Record<string, string>;
  entries: string[];
  compose: any;
}

/** Fetches an app by its URI and unpacks its bundle in memory. */
export async function fetchApp(client: RegistryClient, uri: string): Promise<FetchedApp> {
  const ref = parseReference(uri);
  const m = await client.getManifest(ref.repository, ref.digest!);
  const manifest = JSON.parse(new TextDecoder().decode(m.bytes)) as AppManifest;
  const layer = manifest.layers[0];
  const bundle = await client.getBlobBytes(ref.repository, layer.digest);
  const index = JSON.parse(new TextDecoder().decode(await client.getBlobBytes(ref.repository, layer.annotations["org.foundries.app.bundle.index.digest"]!)));
  const files: Record<string, string> = {};
  const entries: string[] = [];
  const ex = tar.extract();
  const done = (async () => {
    for await (const e of ex) {
      entries.push(e.header.name);
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      if (e.header.type === "file") files[e.header.name] = Buffer.concat(chunks).toString();
    }
  })();
  ex.end(gunzipSync(bundle));
  await done;
  return { manifest, bundle, index, files, entries, compose: parse(files["docker-compose.yml"] ?? "") };
}
