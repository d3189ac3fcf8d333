/** A base root filesystem (directory or tar) copied into the tree before the apps are added. */
import { cp, stat } from "node:fs/promises";

export class BaseRootfsError extends Error {
  override name = "BaseRootfsError";
}

export async function unpackBase(base: string, tree: string): Promise<void> {
  const s = await stat(base).catch(() => undefined);
  if (!s) throw new BaseRootfsError(`Base rootfs ${base} does not exist`);
  if (s.isDirectory()) {
    await cp(base, tree, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    return;
  }
  const proc = Bun.spawn(["tar", "--numeric-owner", "-xf", base, "-C", tree], { stderr: "pipe" });
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new BaseRootfsError(`Cannot unpack base rootfs ${base}: ${err.trim()}`);
}
