/**
 * Finding what a containers repo publishes: every top-level
 * directory holding a compose file is an app named after the directory; every
 * top-level directory holding a Dockerfile builds an image of the same name.
 * Only what the commit holds counts, as in CI: what git ignores (a
 * developer's `.env`, say) is no app, no build and no file of an app's bundle,
 * and each app carries the list left out, so publish can say it.
 *
 * @module
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { COMPOSE_FILE_NAMES, projectName } from "../../lib/compose/app-format.ts";
import { listBundleFiles } from "../../lib/compose/bundle.ts";
import { pathListMatcher } from "../../lib/compose/ignore.ts";
import { ignoredPaths, leftOutText } from "./git.ts";

export class NothingToPublishError extends Error {
  override name = "NothingToPublishError";
}

export interface AppDir {
  name: string;
  dir: string;
  composeFileName: string;
  /** What git ignores in the app folder (relative; a wholly ignored folder once, ending in `/`): its bundle leaves it out, and an ignored `.env` is not read. */
  gitIgnored: string[];
  /** What its bundle holds besides the pinned compose file, in tar order: each path (relative; folders end in `/`) with its size as listed (a folder's 0). */
  files: { name: string; size: number }[];
}

export interface BuildDir {
  name: string;
  dir: string;
}

const APP_NAME = /^[a-z0-9][a-z0-9_.-]{0,127}$/;

async function isFile(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isFile() ?? false;
}

/**
 * Lists apps and image builds of a git checkout, sorted by name.
 *
 * @example
 * ```ts
 * const { apps } = await discover("containers");
 * apps[0]; // { name: "envapp", dir: "containers/envapp", composeFileName: "compose.yaml", gitIgnored: [".env"], files: [{ name: "app.conf", size: 2 }] }
 * ```
 * @throws {NothingToPublishError} If `containersDir` has no app directory.
 * @throws {GitError} If `containersDir` is not in a git work tree.
 * @throws {IgnoredComposeFileError} If an app's `.composeappignores` excludes its compose file.
 * @throws {UnsupportedFileError} If an app folder holds a symbolic link or special file its bundle would take.
 */
export async function discover(containersDir: string): Promise<{ apps: AppDir[]; builds: BuildDir[] }> {
  const ignored = await ignoredPaths(containersDir);
  const gitIgnores = pathListMatcher(ignored);
  const apps: AppDir[] = [];
  const builds: BuildDir[] = [];
  let names: string[];
  try {
    names = (await readdir(containersDir)).sort();
  } catch (cause) {
    throw new NothingToPublishError(`Cannot read the containers directory ${containersDir}`, { cause });
  }
  for (const name of names) {
    if (name.startsWith(".") || gitIgnores.ignores(name)) continue;
    const dir = join(containersDir, name);
    if (!(await stat(dir)).isDirectory()) continue;
    let composeFileName: string | undefined;
    for (const f of COMPOSE_FILE_NAMES) {
      if (!gitIgnores.ignores(`${name}/${f}`) && (await isFile(join(dir, f)))) {
        composeFileName = f;
        break;
      }
    }
    const hasDockerfile = !gitIgnores.ignores(`${name}/Dockerfile`) && (await isFile(join(dir, "Dockerfile")));
    if ((composeFileName || hasDockerfile) && !APP_NAME.test(name)) {
      const fixed = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 128);
      throw new NothingToPublishError(
        `Cannot publish ${dir}: "${name}" is not a valid app or image name (lowercase letters, digits, . _ -, starting with a letter or digit, at most 128); ` +
          `rename the directory${fixed ? `, e.g. to "${fixed}"` : ""}`,
      );
    }
    if (composeFileName) {
      const gitIgnored = ignored.filter((p) => p.startsWith(`${name}/`)).map((p) => p.slice(name.length + 1));
      const files = (await listBundleFiles(dir, composeFileName, { exclude: gitIgnored })).map(({ name, size }) => ({ name, size }));
      apps.push({ name, dir, composeFileName, gitIgnored, files });
    }
    if (hasDockerfile) builds.push({ name, dir });
  }
  if (apps.length === 0) {
    throw new NothingToPublishError(`Nothing to publish in ${containersDir}: no top-level directory holds a docker-compose.yml, compose.yml or compose.yaml`);
  }
  // Two apps a device would run as one compose project (`a.b` and `ab`) would remove each other's containers.
  const byProject = new Map<string, string>();
  for (const app of apps) {
    const other = byProject.get(projectName(app.name));
    if (other !== undefined)
      throw new NothingToPublishError(
        `Cannot publish ${containersDir}: apps "${other}" and "${app.name}" would run as one compose project ("${projectName(app.name)}") on the device, ` +
          "which drops dots, and remove each other's containers; rename one of the directories",
      );
    byProject.set(projectName(app.name), app.name);
  }
  return { apps, builds };
}

/**
 * What publish says of an app whose folder holds what git ignores: one line, the first few
 * paths and how many more; undefined when there are none.
 *
 * @example
 * ```ts
 * gitIgnoredNote({ ...app, name: "envapp", gitIgnored: [".env"] });
 * // "app envapp: left out 1 path git ignores, which the commit does not hold: .env (.env is not read for variables either)"
 * ```
 */
export function gitIgnoredNote(app: AppDir): string | undefined {
  const n = app.gitIgnored.length;
  if (n === 0) return undefined;
  const dotEnv = app.gitIgnored.includes(".env") ? " (.env is not read for variables either)" : "";
  return `app ${app.name}: ${leftOutText(app.gitIgnored)}${dotEnv}`;
}
