/**
 * Where each service's image comes from, decided before anything is built or
 * pushed: a build (a top-level directory with a Dockerfile, or a service's
 * own `build:` with a context inside the repository) or an image reference
 * (looked up in the local engine, then in its registry). A build context
 * outside the repository is refused: CI would build something the commit
 * does not hold. So is an `env_file` the app's bundle does not hold (outside
 * the app folder, git-ignored, excluded, missing): compose on the device
 * would not find it, and the install, then its rollback, would fail. So is
 * a relative bind mount outside the app folder (`../x`, or a named volume
 * bound to such a folder, or a config's or secret's `file:`), which on a
 * device is another place; fioup does
 * not look again, so this is the one check. And `extends`, which nothing
 * follows to check and pin.
 *
 * @module
 */
import { realpathSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { isAbsolute, join, relative, resolve as resolvePath, sep } from "node:path";
import { ComposeFileError, EXTENDS_NOT_SUPPORTED, type ComposeService, type EnvFile } from "../../lib/compose/compose-file.ts";
import { IGNORE_FILE_NAME } from "../../lib/compose/app-format.ts";
import { pathListMatcher } from "../../lib/compose/ignore.ts";
import { parseReference, type Reference } from "../../lib/oci/reference.ts";
import type { AppDir, BuildDir } from "./discover.ts";

/** A service whose image cannot be planned: names the app, the service and the reason. */
export class ImageResolveError extends Error {
  override name = "ImageResolveError";
}

/** A `build:` whose context or Dockerfile lies outside the repository. */
export class BuildContextError extends ImageResolveError {
  override name = "BuildContextError";
}

/** A `build:` whose context folder or Dockerfile is not in the checkout: the repo is wrong, found before anything is built. */
export class MissingBuildFileError extends Error {
  override name = "MissingBuildFileError";
}

/** One image to build. */
export interface BuildSpec {
  /** Dedup key: same context, Dockerfile, target and args build once. */
  key: string;
  /** Repository under the factory: `<dir>` for a top-level build, `<app>/<service>` for a service's own. */
  name: string;
  dir: string;
  /** Absolute Dockerfile path when not `<dir>/Dockerfile`. */
  dockerfile?: string;
  target?: string;
  buildArgs?: Record<string, string>;
  /** For messages and the report: `api/Dockerfile`. */
  from: string;
  /** Extra tag suffix when args/target/dockerfile vary the result (same commit, other image). */
  variant?: string;
}

export type ServicePlan = { build: BuildSpec } | { ref: Reference };

const real = (p: string) => {
  try {
    return realpathSync(p);
  } catch {
    return resolvePath(p);
  }
};

const inside = (root: string, p: string) => {
  const r = relative(root, p);
  return r === "" || (!r.startsWith(`..${sep}`) && r !== ".." && !isAbsolute(r));
};

/** An `env_file` must be a file of the app's bundle, the one folder a device gets; an optional one (`required: false`) may be absent. */
function checkEnvFile(app: AppDir, service: string, f: EnvFile): void {
  const composeFile = `${app.name}/${app.composeFileName}`;
  const abs = resolvePath(app.dir, f.path);
  const rel = relative(app.dir, abs).split(sep).join("/");
  if (isAbsolute(f.path) || rel === "" || !inside(app.dir, abs)) {
    throw new ComposeFileError(
      composeFile,
      `env_file ${f.path} is outside the app folder ${app.name}: a device gets only the app folder, so compose there would not find it; move the file into ${app.name}/ and name it from there`,
      service,
    );
  }
  if (app.files.some((file) => file.name === rel) || !f.required) return;
  const st = statSync(abs, { throwIfNoEntry: false });
  const why = pathListMatcher(app.gitIgnored).ignores(rel)
    ? "git ignores it, so the commit does not hold it; commit it (git add -f), or write its values into the compose file"
    : !st
      ? "there is no such file in the checkout; commit it, or fix the path"
      : !st.isFile()
        ? "it is not a file"
        : `${app.name}/${IGNORE_FILE_NAME} excludes it; take it out of that list`;
  throw new ComposeFileError(composeFile, `env_file ${f.path} is not in the app's bundle: ${why}`, service);
}

/**
 * A bind mount written relative must stay inside the app folder: on a device the apps' folders
 * sit side by side, so `../x` would mount the apps' root or another app's folder (whatever is
 * there, or an empty directory Docker makes), not what the checkout holds beside the app.
 */
function checkBindSource(app: AppDir, service: string, source: string, what = "the bind mount"): void {
  if (inside(app.dir, resolvePath(app.dir, source))) return;
  throw new ComposeFileError(
    `${app.name}/${app.composeFileName}`,
    `${what} ${source} is outside the app folder ${app.name}: a device gets only the app folder, and there ${source} is another place (the apps' root or another app's folder); keep the mounted files inside ${app.name}/, or mount an absolute path of the device`,
    service,
  );
}

/** The build of a top-level directory. */
export function topLevelBuild(b: BuildDir): BuildSpec {
  return { key: `${real(b.dir)}\0Dockerfile\0\0`, name: b.name, dir: b.dir, from: `${b.name}/Dockerfile` };
}

/**
 * Decides where a service's image comes from.
 *
 * @throws {BuildContextError} If its build context or Dockerfile is outside `repoDir`.
 * @throws {ImageResolveError} If it has no usable build and no valid image reference.
 * @throws {ComposeFileError} If it has `extends`, an `env_file` its app's bundle does not hold, or a relative bind mount, config or secret file outside the app folder.
 */
export function planService(repoDir: string, app: AppDir, svc: ComposeService, builds: BuildDir[], factory: string): ServicePlan {
  const where = `service "${svc.name}" in app "${app.name}"`;
  const composeFile = `${app.name}/${app.composeFileName}`;
  if (svc.extends) throw new ComposeFileError(composeFile, EXTENDS_NOT_SUPPORTED, svc.name);
  for (const f of svc.envFiles ?? []) checkEnvFile(app, svc.name, f);
  for (const source of svc.bindSources ?? []) checkBindSource(app, svc.name, source);
  for (const f of svc.fileSources ?? []) checkBindSource(app, svc.name, f.file, `the ${f.kind} ${f.name}'s file`);
  if (svc.build) {
    const root = real(repoDir);
    const ctx = real(resolvePath(app.dir, svc.buildContext ?? "."));
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(svc.buildContext ?? "") || !inside(root, ctx)) {
      throw new BuildContextError(`Cannot publish ${where}: its build context "${svc.buildContext}" is outside the repository; CI builds only what the commit holds`);
    }
    const dockerfile = svc.dockerfile ? real(resolvePath(ctx, svc.dockerfile)) : undefined;
    if (dockerfile && !inside(root, dockerfile)) {
      throw new BuildContextError(`Cannot publish ${where}: its Dockerfile "${svc.dockerfile}" is outside the repository`);
    }
    const kind = (p: string) => {
      const st = statSync(p, { throwIfNoEntry: false });
      return st?.isDirectory() ? "dir" : st?.isFile() ? "file" : undefined;
    };
    const shown = (p: string) => relative(root, p) || ".";
    if (kind(ctx) !== "dir") {
      throw new MissingBuildFileError(`Cannot publish ${where}: its build context ${shown(ctx)} is not a folder of the checkout (build: ${svc.buildContext ?? "."} in ${app.name}/${app.composeFileName}); commit it, or fix the path`);
    }
    const file = dockerfile ?? join(ctx, "Dockerfile");
    if (kind(file) !== "file") {
      throw new MissingBuildFileError(`Cannot publish ${where}: there is no Dockerfile at ${shown(file)}; commit one there, or name it with build.dockerfile in ${app.name}/${app.composeFileName}`);
    }
    const custom = dockerfile !== undefined || svc.buildTarget !== undefined || (svc.buildArgs && Object.keys(svc.buildArgs).length > 0);
    const top = builds.find((b) => real(b.dir) === ctx);
    if (top && !custom) return { build: topLevelBuild(top) };
    const args = svc.buildArgs ?? {};
    const targetAndArgs = `\0${svc.buildTarget ?? ""}\0${JSON.stringify(Object.entries(args).sort())}`;
    const key = `${ctx}\0${dockerfile ?? "Dockerfile"}${targetAndArgs}`;
    const rel = relative(root, ctx) || ".";
    // The variant tags the image in the registry, so it says what the build is, not where the checkout
    // is: the Dockerfile relative to its context. With its absolute path, the same commit published
    // from two CI workspaces got two tags, and the second publish rebuilt and pushed it again. Without
    // a build.dockerfile the text is the one hashed before, so those tags stay as they were.
    const variantOf = `\0${dockerfile ? relative(ctx, dockerfile).split(sep).join("/") : "Dockerfile"}${targetAndArgs}`;
    return {
      build: {
        key,
        name: `${app.name}/${svc.name.toLowerCase()}`,
        dir: ctx,
        ...(dockerfile ? { dockerfile } : {}),
        ...(svc.buildTarget ? { target: svc.buildTarget } : {}),
        ...(Object.keys(args).length ? { buildArgs: args } : {}),
        from: join(rel, svc.dockerfile ?? "Dockerfile"),
        ...(custom ? { variant: createHash("sha256").update(variantOf).digest("hex").slice(0, 8) } : {}),
      },
    };
  }
  if (!svc.image) throw new ImageResolveError(`Cannot publish ${where}: it has neither an image nor a build section`);
  let ref: Reference;
  try {
    ref = parseReference(svc.image);
  } catch (err) {
    throw new ImageResolveError(`Cannot publish ${where}: ${(err as Error).message}`);
  }
  // `image: <dir>` or `image: <anything>/<factory>/<dir>` names the image a top-level directory builds.
  const last = ref.repository.split("/").pop()!;
  const b = builds.find((x) => x.name === last);
  if (b && !ref.digest) {
    const bare = ref.registry === "docker.io" && ref.repository === `library/${last}` && !svc.image.includes("/");
    if (bare || ref.repository === `${factory}/${last}`) return { build: topLevelBuild(b) };
  }
  return { ref };
}

/** Below this, a build context in a bundle is not worth a warning (a Dockerfile and a script). */
export const SHIPPED_TWICE_WARN_BYTES = 1 << 20;

/** A build context that lies in its app folder, so the app's bundle carries it too. */
export interface ContextInBundle {
  /** The services built from it (or from a folder inside it), in the compose file's order. */
  services: string[];
  /** The context relative to the app folder, ending in `/`; "" for the app folder itself. */
  folder: string;
  files: number;
  bytes: number;
}

/**
 * The build contexts of `app`'s services (from `plans`, keyed `<app>/<service>`) that lie inside
 * the app folder, with the bundle files under each (from `app.files`, sized when they were listed;
 * the compose file is not counted). Such files reach a device twice: in the image built
 * from them, and in the bundle, which every device downloads and keeps, although compose runs the
 * image. A context inside another counts with it (its files once), and services sharing one are
 * named together. Paths compare as real paths: a checkout reached through a symbolic link is the
 * same folder. Files a service reads at run time (a bind mount, an env_file) must stay: the
 * caller's warning says so.
 */
export function contextsInBundle(app: AppDir, plans: ReadonlyMap<string, ServicePlan>): ContextInBundle[] {
  const appDir = real(app.dir);
  const byFolder = new Map<string, string[]>();
  for (const [key, plan] of plans) {
    if (!key.startsWith(`${app.name}/`) || !("build" in plan)) continue;
    const ctx = real(plan.build.dir);
    if (!inside(appDir, ctx)) continue;
    const rel = relative(appDir, ctx).split(sep).join("/");
    const folder = rel === "" ? "" : `${rel}/`;
    byFolder.set(folder, [...(byFolder.get(folder) ?? []), key.slice(app.name.length + 1)]);
  }
  // Outermost first; a folder inside one already taken adds its services there.
  const found: ContextInBundle[] = [];
  for (const folder of [...byFolder.keys()].sort((a, b) => a.length - b.length)) {
    const outer = found.find((c) => folder.startsWith(c.folder));
    if (outer) {
      outer.services.push(...byFolder.get(folder)!);
      continue;
    }
    let count = 0;
    let bytes = 0;
    for (const f of app.files) {
      if (f.name.endsWith("/") || !f.name.startsWith(folder) || f.name === app.composeFileName) continue;
      count++;
      bytes += f.size;
    }
    if (count > 0) found.push({ services: [...byFolder.get(folder)!], folder, files: count, bytes });
  }
  return found;
}
