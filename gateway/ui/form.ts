/**
 * What a dashboard POST must be before any of it is acted on: a form, as a browser sends one.
 * hono's parseBody answers `{}` for a body of any other type (JSON, text), and a route that read
 * that as an empty form set a device's tags to none on a JSON body of `{"tags": "main"}`: a body
 * that is not a form, or a form without the field a route changes, is refused instead.
 *
 * @module
 */
import type { Context } from "hono";

/** The dashboard's own refusal of a form (the admin API's are ApiCallError): said on the page, with `status`. */
export class FormRefusedError extends Error {
  override name = "FormRefusedError";
  readonly status = 400;
}

/** The two encodings of an HTML form. */
const FORM_TYPE = /^\s*(application\/x-www-form-urlencoded|multipart\/form-data)\s*(;|$)/i;

/** Whether the request's body is a form (or there is none: an action whose only field is the CSRF header). */
export function bodyIsForm(c: Context): boolean {
  const type = c.req.header("content-type");
  if (type !== undefined) return FORM_TYPE.test(type);
  return Number(c.req.header("content-length") ?? 0) === 0 && c.req.header("transfer-encoding") === undefined;
}

/** Why a POST whose body is not a form is refused (415), before anything is read or changed. */
export const notAFormMessage = (c: Context) =>
  `The dashboard takes a form (application/x-www-form-urlencoded or multipart/form-data), not ${c.req.header("content-type") ?? "a body without a content type"}: nothing was changed`;

/**
 * The form's field `name` as text; an empty one is "" (a field cleared on purpose).
 *
 * @throws {FormRefusedError} If the form has no such field: what it would change is left alone.
 */
export function formField(form: Record<string, unknown>, name: string): string {
  const v = form[name];
  if (typeof v !== "string") throw new FormRefusedError(`The form has no "${name}" field: nothing was changed`);
  return v;
}
