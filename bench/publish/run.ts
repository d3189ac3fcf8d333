/**
 * Benchmark: `gateway publish` of one app with three images (one built from a Dockerfile, two
 * copied from a third-party registry), twice, against a real gateway. Prints the wall time and
 * the bytes pushed of each run. Goal: the second run (same commit) pushes 0 bytes in < 2 s.
 *
 *   bun bench/publish/run.ts [--size MB]   (random payload per image, default 32)
 */
import { join } from "node:path";
import { startDockerd } from "../../test/harness/dockerd.ts";
import { startDockerRegistry } from "../../test/harness/docker-registry.ts";
import { writeOciLayout } from "../../test/harness/images.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";
import { startGateway } from "../../test/publish/_gateway.ts";
import { benchArgs } from "../_args.ts";
import { containersRepo, loadBaseImage } from "../../test/publish/_setup.ts";

const { values } = benchArgs({ options: { size: { type: "string", default: "32" } } });
const sizeMb = Number(values.size);
if (!Number.isFinite(sizeMb) || sizeMb <= 0) throw new Error("--size must be a positive number of MB");

const random = (mb: number) => {
  const out = new Uint8Array(mb * 1024 * 1024);
  for (let i = 0; i < out.length; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
};

const dockerd = await startDockerd();
const upstream = await startDockerRegistry();
const gw = await startGateway();
try {
  process.stderr.write(`setting up: ${sizeMb} MB per image...\n`);
  await loadBaseImage(dockerd);
  for (const name of ["db", "cache"]) {
    const dir = await tempDir(`bench-${name}-`);
    await writeOciLayout(dir, { files: { [`/data/${name}.bin`]: random(sizeMb) }, cmd: ["sleep", "3600"], tag: `library/${name}:1` });
    await run(["skopeo", "copy", "--dest-tls-verify=false", `oci:${dir}:1`, `docker://${upstream.host}/library/${name}:1`]);
  }
  const repo = await containersRepo({
    "web/Dockerfile": "FROM fixtures/busybox:latest\nCOPY payload.bin /data/payload.bin\nCMD [\"httpd\", \"-f\", \"-p\", \"80\"]\n",
    "web/.composeappignores": "Dockerfile\npayload.bin\n",
    "web/docker-compose.yml": "services:\n  web:\n    build: .\n    image: web\n  db:\n    image: db:1\n  cache:\n    image: cache:1\n",
  });
  await Bun.write(join(repo, "web", "payload.bin"), random(sizeMb));
  await run(["git", "-C", repo, "add", "-A"]);
  await run(["git", "-C", repo, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-q", "-m", "payload"]);

  const rows: string[][] = [];
  for (const label of ["first publish", "same commit again"]) {
    const t0 = performance.now();
    const p = Bun.spawn(
      [process.execPath, join(import.meta.dir, "..", "..", "gateway", "main.ts"), "publish", "--containers", repo, "--ref", "refs/heads/master",
        "--server", gw.url, "--token", gw.adminToken, "--mirror", `docker.io=${upstream.host}`, "--insecure-registry", upstream.host, "--format", "json"],
      { env: { ...process.env, ...dockerd.env }, stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    const ms = performance.now() - t0;
    if (code !== 0) throw new Error(`publish failed (${code}):\n${err}`);
    const r = JSON.parse(out) as { pushed: { bytes: number; blobs: number; manifests: number }; version: number };
    rows.push([label, `${(ms / 1000).toFixed(2)} s`, `${(r.pushed.bytes / 1024 / 1024).toFixed(2)} MiB (${r.pushed.bytes} B)`, String(r.pushed.blobs), String(r.pushed.manifests), String(r.version)]);
  }
  const head = ["run", "wall time", "bytes pushed", "blobs", "manifests", "target version"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(`gateway publish: 1 app, 3 images (1 built, 2 copied), ${sizeMb} MB random payload each`);
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  const second = rows[1]!;
  console.log(`goal: second run 0 bytes and < 2 s → ${second[2]!.startsWith("0.00") && parseFloat(second[1]!) < 2 ? "met" : "NOT met"}`);
} finally {
  await gw.stop();
  await upstream.stop();
  await dockerd.stop();
}
