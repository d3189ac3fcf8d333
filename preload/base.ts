/**
 * A base root filesystem (directory or tar) copied into the tree before the apps are added.
 * A real rootfs holds device nodes, sockets, owners other than root and hard links: it is copied
 * with `cp -a` (or unpacked with tar as root), which keep them all, never file by file. What it
 * gave must look like a root filesystem (`etc/` or `usr/` at its top): a tar packed from outside
 * its folder (`tar -cf base.tar rootfs/`) would otherwise put the whole OS under `/rootfs` and
 * the image would not boot.
 *
 * @module
 */
import { readdir, stat } from "node:fs/promises";
import { runTool } from "./_children.ts";

export class BaseRootfsError extends Error {
  override name = "BaseRootfsError";
}

/** Top-level folders of which at least one is in every root filesystem. */
const ROOTFS_MARKERS = ["etc", "usr"];

export async function unpackBase(base: string, tree: string): Promise<void> {
  const s = await stat(base).catch(() => undefined);
  if (!s) throw new BaseRootfsError(`Base rootfs ${base} does not exist`);
  const cmd = s.isDirectory()
    ? ["cp", "-a", "--reflink=auto", `${base.replace(/\/+$/, "")}/.`, tree]
    : ["tar", "--numeric-owner", "-xf", base, "-C", tree];
  const { code, stderr: why } = await runTool(cmd);
  if (code !== 0) {
    throw new BaseRootfsError(
      s.isDirectory()
        ? `Cannot copy base rootfs ${base}: ${why}`
        : `Cannot unpack base rootfs ${base} (--base takes a directory or a tar, plain or compressed; unpack an ext4 image first): ${why}`,
    );
  }
  const top = await readdir(tree);
  if (!ROOTFS_MARKERS.some((m) => top.includes(m))) {
    const shown = top.length
      ? `it holds ${top.slice(0, 5).join(", ")}${top.length > 5 ? ", ..." : ""} at its top`
      : // tar reads a file of zeros (an ext4 image's first blocks) as an empty archive.
        `it is empty${s.isDirectory() ? "" : " (is it a tar? --base takes a directory or a tar, plain or compressed; unpack an ext4 image first)"}`;
    const folder = top.length === 1 ? ` (a tar packed from outside its folder? pack it with: tar -C ${top[0]} -cf BASE.tar .)` : "";
    throw new BaseRootfsError(`Base rootfs ${base} is not a root filesystem: no /etc nor /usr in it, ${shown}${folder}`);
  }
}
