/**
 * What the rollouts decide for one device: which target versions it must not see yet, and which
 * it sees with a rollout annotation (the signed views in gateway/ota/views.ts apply it).
 *
 * @module
 */

/** What the device reads from a target's `custom.rollout` (its maintenance window and maximum hold). */
export interface RolloutAnnotation {
  /** The rollout's id. */
  rollout: string;
  /** Maintenance window, e.g. "Sat 02:00-04:00 Europe/Berlin": install only inside it. */
  window?: string;
  /** Seconds an update lock may hold the install off. */
  maxHold?: number;
}

/** One device's view of the targets. Devices with equal keys see the same metadata. */
export interface View {
  /** Stable name of this view: "" when nothing is hidden or annotated (the main chain). */
  key: string;
  /** Values of custom.version whose targets this device must not be offered. */
  hideVersions: string[];
  /** custom.version -> annotation added to those targets' custom.rollout. */
  annotate: Record<string, RolloutAnnotation>;
}

export const EMPTY_VIEW: View = Object.freeze({ key: "", hideVersions: Object.freeze([]) as unknown as string[], annotate: Object.freeze({}) });
