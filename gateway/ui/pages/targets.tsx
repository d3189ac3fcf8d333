/* @jsxImportSource hono/jsx */
/** Targets: versions per hardware id and tag, their apps pinned by digest, how many devices run each. */
import type { TargetsList } from "../../../lib/api/admin.ts";

export function TargetsPage({ targets, running }: { targets: TargetsList; running: Map<string, number> }) {
  // hardware id -> tag ("" for untagged) -> targets, newest version first.
  const groups = new Map<string, Map<string, [string, TargetsList["targets"][string]][]>>();
  for (const [name, t] of Object.entries(targets.targets))
    for (const hw of t.custom.hardwareIds)
      for (const tag of t.custom.tags.length ? t.custom.tags : [""]) {
        const byTag = groups.get(hw) ?? groups.set(hw, new Map()).get(hw)!;
        (byTag.get(tag) ?? byTag.set(tag, []).get(tag)!).push([name, t]);
      }
  return (
    <>
      <h1>Targets</h1>
      <p class="muted">targets.json version {targets.version}; {Object.keys(targets.targets).length} targets.</p>
      <div id="targets" data-live>
        {groups.size === 0 && <p class="muted">No targets published yet.</p>}
        {[...groups.entries()].sort().map(([hw, byTag]) => (
          <section aria-label={`Hardware id ${hw}`}>
            <h2>{hw}</h2>
            {[...byTag.entries()].sort().map(([tag, list]) => (
              <div class="card" style="margin-bottom:.8rem">
                <h3 style="margin:.1rem 0 .4rem;font-size:1rem">{tag ? `tag ${tag}` : "untagged"}</h3>
                <div class="scroll">
                  <table>
                    <thead>
                      <tr>
                        <th>Version</th>
                        <th>Target</th>
                        <th>Apps (pinned)</th>
                        <th>Devices</th>
                      </tr>
                    </thead>
                    <tbody>
                      {list
                        .sort((a, b) => Number(b[1].custom.version) - Number(a[1].custom.version))
                        .map(([name, t]) => (
                          <tr data-target={name}>
                            <td>{t.custom.version}</td>
                            <td>{name}</td>
                            <td>
                              {Object.entries(t.custom.docker_compose_apps).map(([app, ref]) => (
                                <div>
                                  <strong>{app}</strong> <code class="muted">{ref.uri}</code>
                                </div>
                              ))}
                            </td>
                            <td>
                              <a href={`/ui/devices?target=${encodeURIComponent(name)}`}>{String(running.get(name) ?? 0)}</a>
                            </td>
                          </tr>
                        ))}
                    </tbody>
                  </table>
                </div>
              </div>
            ))}
          </section>
        ))}
      </div>
    </>
  );
}
