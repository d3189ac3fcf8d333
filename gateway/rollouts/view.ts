/**
 * What the rollouts decide for one device: which target versions it must not see yet, and which
 * it sees with a rollout annotation. The type belongs to the signing layer (gateway/ota/views.ts,
 * which must not import the engine); re-exported here for the engine's modules.
 *
 * @module
 */
export type { RolloutAnnotation, View } from "../ota/views.ts";
export { MAIN_VIEW as EMPTY_VIEW } from "../ota/views.ts";
