/**
 * Desired-state feedback: the overall status of an activity and the status
 * of every action, published in full each time on
 * `containersupdate/desiredstatefeedback`.
 *
 * @module
 */

export type ActivityStatus = "IDENTIFYING" | "IDENTIFIED" | "RUNNING" | "COMPLETED" | "INCOMPLETE" | "IDENTIFICATION_FAILED";

export type ActionStatus =
  | "IDENTIFIED"
  | "DOWNLOADING"
  | "DOWNLOAD_SUCCESS"
  | "DOWNLOAD_FAILURE"
  | "UPDATING"
  | "UPDATE_SUCCESS"
  | "UPDATE_FAILURE"
  | "ACTIVATING"
  | "ACTIVATION_SUCCESS"
  | "ACTIVATION_FAILURE"
  | "REMOVING"
  | "REMOVAL_SUCCESS"
  | "REMOVAL_FAILURE";

export interface FeedbackAction {
  component: { id: string; version: string };
  status: ActionStatus;
  /** Percent of the image download (0-100) while DOWNLOADING. */
  progress?: number;
  message?: string;
}

export interface Feedback {
  status: ActivityStatus;
  message?: string;
  actions: FeedbackAction[];
}

/** Every message the agent publishes is wrapped like the ones it receives. */
export interface Envelope<T> {
  activityId: string;
  timestamp: number;
  payload: T;
}

export const envelope = <T>(activityId: string, payload: T): Envelope<T> => ({ activityId, timestamp: Date.now(), payload });

/** `containers:<name>`: how a container is named in feedback and in the current state. */
export const componentId = (name: string) => `containers:${name}`;
