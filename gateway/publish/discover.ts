/**
 * Finding what a containers repo publishes: every top-level
 * directory holding a compose file is an app named after the directory; every
 * top-level directory holding a Dockerfile builds an image of the same name.
 *
 * @module
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { COMPOSE_FILE_NAMES } from "../../lib/compose/app-format.ts";

export class NothingToPublishError extends Error {
  override name = "NothingToPublishError";
}

export interface AppDir {
  name: string;
  dir: string;
  composeFileName: string;
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
 * Lists apps and image builds, sorted by name.
 *
 * @throws {NothingToPublishError} If `containersDir` has no app directory.
 */
export async function discover(containersDir: string): Promise<{ apps: AppDir[]; builds: BuildDir[] }> {
  const apps: AppDir[] = [];
  const builds: BuildDir[] = [];
  let names: string[];
  try {
    names = (await readdir(containersDir)).sort();
  } catch (cause) {
    throw new NothingToPublishError(`Cannot read the containers directory ${containersDir}`, { cause });
  }
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const dir = join(containersDir, name);
    if (!(await stat(dir)).isDirectory()) continue;
    let composeFileName: string | undefined;
    for (const f of COMPOSE_FILE_NAMES) {
      if (await isFile(join(dir, f))) {
        composeFileName = f;
        break;
      }
    }
    const hasDockerfile = await isFile(join(dir, "Dockerfile"));
    if ((composeFileName || hasDockerfile) && !APP_NAME.test(name)) {
      const fixed = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 128);
      throw new NothingToPublishError(
        `Cannot publish ${dir}: "${name}" is not a valid app or image name (lowercase letters, digits, . _ -, starting with a letter or digit, at most 128); ` +
          `rename the directory${fixed ? `, e.g. to "${fixed}"` : ""}`,
      );
    }
    if (composeFileName) apps.push({ name, dir, composeFileName });
    if (hasDockerfile) builds.push({ name, dir });
  }
  if (apps.length === 0) {
    throw new NothingToPublishError(`Nothing to publish in ${containersDir}: no top-level directory holds a docker-compose.yml, compose.yml or compose.yaml`);
  }
  return { apps, builds };
}
