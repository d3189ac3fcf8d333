/**
 * What a dashboard POST must be before any of it is acted on: a form, as a browser sends one.
 * hono's parseBody answers `{}` for a body of any other type (JSON, text), and a route that read
 * that as an empty form set a device's tags to none on a JSON body of `{"tags": "main"}`: a body
 * that is not a form, or a form without the field a route changes, is refused instead.
 *
 * And what becomes of a form's input that is refused (by the admin API or by the checks here): the
 * form's page again, saying why above the form, with what was typed still in it, not a page of
 * only the refusal with the typing lost.
 *
 * @module
 */
import type { Context } from "hono";
import { InvalidFleetQueryError } from "../fleet/query.ts";
import { TooManyLabelsError } from "../store/types.ts";
import { ApiCallError } from "./api.ts";

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

/** Input refused, as the form's page shows it: why, the status to answer with, and what was typed (by field). */
export interface Refusal {
  status: number;
  message: string;
  /** Which of the page's forms it came from, when it has several. */
  form?: string;
  typed?: Record<string, string>;
}

/**
 * The refusal of a form's input in `err`, or undefined for any other failure: the API's 4xx but
 * 401 and 403 (the session's end, or a role that may not: no form of the page to go back to).
 */
export function refusalOf(err: unknown): Refusal | undefined {
  if (err instanceof ApiCallError) return err.status >= 400 && err.status < 500 && err.status !== 401 && err.status !== 403 ? { status: err.status, message: err.message } : undefined;
  if (err instanceof FormRefusedError) return { status: err.status, message: err.message };
  if (err instanceof InvalidFleetQueryError || err instanceof TooManyLabelsError) return { status: 400, message: err.message };
  return undefined;
}

/** The form's text fields as typed (the CSRF token left out), to fill the form in again. */
export const typedIn = (form: Record<string, unknown>): Record<string, string> =>
  Object.fromEntries(Object.entries(form).filter((e): e is [string, string] => typeof e[1] === "string" && e[0] !== "_csrf"));
