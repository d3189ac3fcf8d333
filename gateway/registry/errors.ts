/**
 * The registry's error vocabulary: one class carrying an OCI distribution error code and the
 * HTTP status it maps to, so storage code can throw and the route layer answers with the
 * standard body `{"errors":[{"code","message","detail"}]}` in one place.
 *
 * @module
 */

/** Standard OCI distribution-spec error codes (plus the two Docker ones clients know). */
export type RegistryErrorCode =
  | "BLOB_UNKNOWN"
  | "BLOB_UPLOAD_INVALID"
  | "BLOB_UPLOAD_UNKNOWN"
  | "DIGEST_INVALID"
  | "MANIFEST_BLOB_UNKNOWN"
  | "MANIFEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "TAG_INVALID"
  | "SIZE_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED"
  | "TOOMANYREQUESTS"
  | "RANGE_INVALID";

/** A request the registry refuses; `status` is the HTTP status, `code` the OCI error code. */
export class RegistryRequestError extends Error {
  override name = "RegistryRequestError";
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 413 | 416 | 429,
    readonly code: RegistryErrorCode,
    message: string,
    readonly detail?: unknown,
    /** Extra response headers (e.g. Content-Range on 416, Range on an upload gap). */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }

  /** The OCI error body. */
  toBody(): { errors: { code: string; message: string; detail?: unknown }[] } {
    return { errors: [{ code: this.code, message: this.message, ...(this.detail === undefined ? {} : { detail: this.detail }) }] };
  }
}

/** Builds the JSON error response for a {@link RegistryRequestError}. */
export function errorResponse(err: RegistryRequestError, extraHeaders: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(err.toBody()), {
    status: err.status,
    headers: { "Content-Type": "application/json", ...err.headers, ...extraHeaders },
  });
}
