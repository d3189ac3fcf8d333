/**
 * `gateway publish`'s exit codes, so CI can tell a bad commit (fix the repo)
 * from a broken build (look at docker) from an unreachable gateway (retry).
 * They extend the `gateway` binary's table (gateway/exit-codes.ts), which
 * spreads these rows in; `gateway publish --help` prints them. Never
 * renumber, only add. Subclasses come before their parents.
 *
 * @module
 */
import { ComposeFileError } from "../../lib/compose/compose-file.ts";
import { IgnoredComposeFileError, UnsupportedFileError, BundleTooLargeError } from "../../lib/compose/bundle.ts";
import { IgnorePatternError } from "../../lib/compose/ignore.ts";
import { InterpolationError } from "../../lib/compose/interpolate.ts";
import { FactoryConfigError } from "../../lib/factory-config/factory-config.ts";
import { DockerArchiveError } from "../../lib/oci/docker-archive.ts";
import { NoMatchingPlatformError } from "../../lib/oci/image.ts";
import { RegistryError, RegistryUnreachableError } from "../../lib/oci/registry-client.ts";
import { NothingToPublishError } from "./discover.ts";
import { DockerCommandError } from "./docker.ts";
import { GitError, RefMismatchError } from "./git.ts";
import { ImageNotFoundError } from "./images.ts";
import { ImageResolveError, MissingBuildFileError } from "./plan.ts";
import { MissingPlatformError, UnknownHwidPlatformError } from "./platforms.ts";
import { PublishError } from "./publish.ts";
import { TargetVersionError } from "./targets.ts";

type ErrorClass = new (...args: any[]) => Error;

/** [error classes, code, meaning]: the rows publish adds to the gateway's table. */
export const PUBLISH_EXIT_CODES: [ErrorClass[], number, string][] = [
  [
    [ComposeFileError, InterpolationError, FactoryConfigError, NothingToPublishError, IgnorePatternError, IgnoredComposeFileError, UnsupportedFileError, BundleTooLargeError, MissingBuildFileError, PublishError],
    10,
    "publish: the containers repo or factory-config.yml is invalid (compose file, variable, ignore rule, missing Dockerfile, flag value)",
  ],
  [[RefMismatchError, GitError], 11, "publish: HEAD is not the commit --ref (or --commit) names, or the checkout is not a git work tree"],
  [[ImageNotFoundError, ImageResolveError], 12, "publish: an image is in neither the local engine nor its registry, or a build context is outside the repo"],
  [[MissingPlatformError, UnknownHwidPlatformError, NoMatchingPlatformError], 13, "publish: an image lacks the platform a hardware id needs, or a hardware id's platform is unknown"],
  [[DockerCommandError, DockerArchiveError], 14, "publish: docker build or save failed"],
  // export's copy from a registry fails with the same classes, so the same code (export --help lists it).
  [[RegistryError, RegistryUnreachableError], 15, "publish and export: a registry refused or could not be reached (publish: pushing; export: copying)"],
  [[TargetVersionError], 16, "publish: a target of that version already exists (choose another --version)"],
  // Signals, not errors: publish exits with these itself (publish.ts), after cleaning up.
];
