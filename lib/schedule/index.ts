/**
 * Maintenance windows ("Sat 02:00-04:00 Europe/Berlin"): parsing, and whether
 * one is open at an instant or when it opens next, in a time zone through Intl.
 *
 * @module
 */
export * from "./wall-clock.ts";
export * from "./window.ts";
