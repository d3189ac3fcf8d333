/** The bundle reader's error, in a file of its own so exit-code tables can name it without loading the reader. */

/** A directory that is not a complete, readable offline bundle of this format. */
export class InvalidBundleError extends Error {
  override name = "InvalidBundleError";
}
