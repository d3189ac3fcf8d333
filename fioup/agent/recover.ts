/**
 * An activity found persisted when the agent starts (it was killed, or the
 * device lost power, in the middle of an apply) is finished or undone before
 * anything else happens.
 *
 * @module
 */
import type { Activity } from "./activity.ts";
import { setPhase, type ApplyDeps } from "./_phase.ts";
import { cleanup } from "./phases.ts";
import { rollback } from "./rollback.ts";

/**
 * Finishes an activity found persisted at start (the agent was killed), or one
 * whose rollback the engine interrupted (`why` then says what failed): an
 * apply that had started all its new containers is completed; one that had
 * begun changing containers is rolled back; one that had changed nothing is
 * closed INCOMPLETE. The activity's message tells the back end which.
 * @throws {EngineError} The engine cannot be reached (the activity stays persisted as it was).
 */
export async function recoverActivity(d: ApplyDeps, a: Activity, why = "the agent restarted in the middle of the apply"): Promise<void> {
  switch (a.phase) {
    case "done":
      return;
    case "received":
    case "identified":
    case "downloading":
    case "downloaded":
      a.status = "INCOMPLETE";
      a.message = "the agent restarted before changing any container; the previous containers are unchanged";
      setPhase(d, a, "done");
      return;
    case "activated":
      await cleanup(d, a, "the agent restarted after starting the new containers; the desired state is applied");
      return;
    default:
      await rollback(d, a, why);
  }
}

