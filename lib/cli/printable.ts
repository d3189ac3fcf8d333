/**
 * Text a terminal shows as it is: device-supplied strings (names, tags,
 * targets, app states) may carry escape sequences, CR or LF that would let a
 * device repaint or forge lines of an operator's table. Everything the CLIs
 * print in text mode goes through {@link printable}.
 *
 * @module
 */

// C0 (incl. ESC, CR, LF, TAB), DEL, C1, the line/paragraph separators and the bidi
// overrides that reorder what follows them.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Removes control characters (C0, C1, DEL) and bidi/line-separator code points.
 *
 * @example
 * ```ts
 * printable("ok\x1b[2J\r\nroot"); // "ok[2Jroot"
 * ```
 */
export const printable = (text: string): string => text.replace(UNPRINTABLE, "");
