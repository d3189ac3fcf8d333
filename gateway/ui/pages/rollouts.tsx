/* @jsxImportSource hono/jsx */
/** Rollouts: the list, and one rollout's waves as progress bars with its counts, halt reason, holds, events and actions. */
import { HOLD_KIND_NAMES, type RolloutDetail, type RolloutList, type RolloutRow } from "../../../lib/api/admin.ts";
import type { Refusal } from "../form.ts";
import { Ago, Badge, counted, Csrf, Refused } from "../layout.tsx";

const audience = (r: RolloutRow) => (r.groupName ? `group ${r.groupName}` : r.tag ? `tag ${r.tag}` : "-");
const wavesText = (r: RolloutRow) => r.waves.map((w) => `${w}%`).join(", ");
const duration = (s: number) => (s % 3600 === 0 && s ? `${s / 3600}h` : s % 60 === 0 && s ? `${s / 60}m` : `${s}s`);

export function RolloutsPage({ list }: { list: RolloutList }) {
  return (
    <>
      <h1>Rollouts</h1>
      <p class="muted">
        Create one with <code>gateway rollouts create --target VERSION --group G --waves 1%,10%,100%</code>.
      </p>
      <div id="rollouts" data-live class="scroll">
        {list.rollouts.length === 0 ? (
          <p class="muted">No rollouts yet.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>Rollout</th>
                <th>Version</th>
                <th>Audience</th>
                <th>State</th>
                <th>Wave</th>
                <th class="opt">Updated</th>
              </tr>
            </thead>
            <tbody>
              {list.rollouts.map((r) => (
                <tr data-rollout={r.id}>
                  <td>
                    <a href={`/ui/rollouts/${encodeURIComponent(r.id)}`}>{r.id}</a>
                  </td>
                  <td>{r.targetVersion}</td>
                  <td>{audience(r)}</td>
                  <td>
                    <Badge status={r.state} />
                    {r.reason && <div class="muted">{r.reason}</div>}
                  </td>
                  <td>{`${r.wave + 1} of ${r.waves.length} (${r.waves[r.wave]}%)`}</td>
                  <td class="opt">
                    <Ago at={r.updatedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </>
  );
}

/** The actions each state allows (the API decides; this only hides what it would refuse: advancing a halted rollout, which must be resumed first). */
const ACTIONS: Record<RolloutRow["state"], ("pause" | "resume" | "advance" | "cancel")[]> = {
  running: ["pause", "advance", "cancel"],
  paused: ["resume", "advance", "cancel"],
  halted: ["resume", "cancel"],
  completed: [],
  cancelled: [],
};
/** The actions offered for `r`: its state's, without advance on the last wave (there is no next one to release). */
export const actionsFor = (r: Pick<RolloutRow, "state" | "wave" | "waves">) => ACTIONS[r.state].filter((a) => a !== "advance" || r.wave < r.waves.length - 1);
const CONFIRM: Record<string, string | undefined> = {
  advance: "Release the next wave now, without waiting for the soak time?",
  cancel: "Cancel this rollout? Devices outside the released waves will not be offered this version.",
};

/** How many a cut list is of: the count, "more" where the API gave none. */
const ofHowMany = (n: number | undefined) => (n === undefined ? "more" : n.toLocaleString("en"));

/** One wave as a bar: succeeded, failed and pending members, with the numbers in text too. */
function WaveBar({ r, i }: { r: RolloutDetail; i: number }) {
  const n = (status: string) => r.counts.find((c) => c.wave === i && c.status === status)?.devices ?? 0;
  const [ok, bad, pending] = [n("succeeded"), n("failed"), n("pending")];
  const total = ok + bad + pending;
  const pct = (x: number) => (total ? (100 * x) / total : 0);
  const released = i <= r.wave;
  return (
    <li data-wave={i + 1} class="wave">
      <div>
        <strong>{`Wave ${i + 1}`}</strong> <span class="muted">{`up to ${r.waves[i]}% · ${counted(total, "device")} · ${released ? "released" : "waiting"}`}</span>
      </div>
      <div class="bar" role="img" aria-label={`wave ${i + 1}: ${ok} succeeded, ${bad} failed, ${pending} pending`}>
        <span class="ok" style={`width:${pct(ok)}%`} />
        <span class="bad" style={`width:${pct(bad)}%`} />
        <span class="pending" style={`width:${pct(pending)}%`} />
      </div>
      <div class="muted" data-wave-counts>{`${ok} succeeded · ${bad} failed · ${pending} pending`}</div>
    </li>
  );
}

/** `refused`: an action the API refused (a state the CLI or the tick changed meanwhile): said above the page. */
export function RolloutPage({ r, csrf, canWrite, refused }: { r: RolloutDetail; csrf: string; canWrite: boolean; refused?: Refusal }) {
  return (
    <>
      <p>
        <a href="/ui/rollouts">← Rollouts</a>
      </p>
      <h1>{`Rollout ${r.id}: version ${r.targetVersion}`}</h1>
      {refused && <Refused message={refused.message} />}
      <div id="rollout" data-live>
        <div class="grid">
          <section class="card" aria-labelledby="h-details">
            <h2 id="h-details">Details</h2>
            <dl class="kv">
              <dt>State</dt>
              <dd>
                <Badge status={r.state} />
              </dd>
              {r.reason && (
                <>
                  <dt>Why</dt>
                  <dd data-reason class={r.state === "halted" ? "error" : undefined}>
                    {r.reason}
                  </dd>
                </>
              )}
              <dt>Audience</dt>
              <dd>{audience(r)}</dd>
              <dt>Waves</dt>
              <dd>{wavesText(r)}</dd>
              <dt>Current wave</dt>
              <dd>
                {`${r.wave + 1}, started `}
                <Ago at={r.waveStartedAt} />
              </dd>
              <dt>Soak · health window</dt>
              <dd>{`${duration(r.soakS)} · ${duration(r.healthWindowS)}`}</dd>
              <dt>Halts above</dt>
              <dd>{`${r.maxFailuresPct}% failures`}</dd>
              {r.installWindow && (
                <>
                  <dt>Install window</dt>
                  <dd>{r.installWindow}</dd>
                </>
              )}
              {r.maxHoldS !== null && (
                <>
                  <dt>Longest lock hold</dt>
                  <dd>{duration(r.maxHoldS)}</dd>
                </>
              )}
            </dl>
          </section>
          <section class="card" aria-labelledby="h-waves">
            <h2 id="h-waves">Waves</h2>
            <ol class="waves">
              {r.waves.map((_, i) => (
                <WaveBar r={r} i={i} />
              ))}
            </ol>
          </section>
        </div>
        {r.failures.length > 0 && (
          <section aria-labelledby="h-failures">
            <h2 id="h-failures">Failed devices</h2>
            <div class="scroll">
              <table>
                <tbody>
                  {r.failures.map((d) => (
                    <tr data-failed={d.uuid}>
                      <td>
                        <a href={`/ui/devices/${d.uuid}`}>
                          <code>{d.uuid}</code>
                        </a>
                      </td>
                      <td>{`wave ${d.wave + 1}`}</td>
                      <td class="error">{d.reason ?? "-"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        )}
        {r.holds.length > 0 && (
          <section aria-labelledby="h-holds">
            <h2 id="h-holds">Deferred installs</h2>
            {r.moreHolds && <p class="muted">{`The first ${r.holds.length} of ${ofHowMany(r.heldDevices)} devices that defer the install.`}</p>}
            <div class="scroll">
              <table>
                <tbody>
                  {r.holds.map((d) => (
                    <tr data-held={d.uuid}>
                      <td>
                        <a href={`/ui/devices/${d.uuid}`}>
                          <code>{d.uuid}</code>
                        </a>
                      </td>
                      <td>{HOLD_KIND_NAMES[d.hold!.kind]}</td>
                      <td>{d.hold!.until ? `until ${d.hold!.until}` : "until released"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        )}
        {r.waiting.length > 0 && (
          <section aria-labelledby="h-waiting">
            <h2 id="h-waiting">Waiting for their target</h2>
            {r.moreWaiting && <p class="muted">{`The first ${r.waiting.length} of ${ofHowMany(r.waitingDevices)} devices that wait.`}</p>}
            <div class="scroll">
              <table>
                <tbody>
                  {r.waiting.map((d) => (
                    <tr data-waiting={d.uuid}>
                      <td>
                        <a href={`/ui/devices/${d.uuid}`}>
                          <code>{d.uuid}</code>
                        </a>
                      </td>
                      <td>{d.reason}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        )}
        <section aria-labelledby="h-events">
          <h2 id="h-events">Events</h2>
          <ol class="timeline">
            {r.events.map((e) => (
              <li class={e.kind === "halted" || e.kind === "device-failed" ? "bad" : e.kind === "completed" || e.kind === "device-succeeded" ? "ok" : undefined}>
                <strong>{e.kind}</strong> <Ago at={e.at} />
                {e.deviceUuid && (
                  <>
                    {" "}
                    <a href={`/ui/devices/${e.deviceUuid}`}>
                      <code>{e.deviceUuid}</code>
                    </a>
                  </>
                )}
                <div class="muted">{e.reason}</div>
              </li>
            ))}
          </ol>
        </section>
      </div>
      {/* A live region of its own, always there: the buttons follow the state as the CLI or the tick change it. */}
      <div id="rollout-actions" data-live>
        {canWrite && actionsFor(r).length > 0 && (
          <section aria-labelledby="h-actions">
            <h2 id="h-actions">Actions</h2>
            <div class="actions">
              {actionsFor(r).map((a) => (
                <form method="post" action={`/ui/rollouts/${encodeURIComponent(r.id)}/${a}`} data-confirm={CONFIRM[a]}>
                  <Csrf token={csrf} />
                  {a === "advance" && <input type="hidden" name="fromWave" value={String(r.wave + 1)} />}
                  <button type="submit" class={a === "cancel" ? "danger" : undefined}>
                    {a[0]!.toUpperCase() + a.slice(1)}
                  </button>
                </form>
              ))}
            </div>
          </section>
        )}
      </div>
    </>
  );
}
