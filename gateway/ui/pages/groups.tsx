/* @jsxImportSource hono/jsx */
/** Groups: static lists of devices and dynamic queries, their sizes, members, and a form to make one. */
import type { GroupDetail, GroupList } from "../../../lib/api/admin.ts";
import type { Refusal } from "../form.ts";
import { Ago, counted, Csrf, Refused } from "../layout.tsx";

/** `refused`: the new group's name and query, refused: said above the form, which keeps them. */
export function GroupsPage({ list, csrf, canWrite, refused }: { list: GroupList; csrf: string; canWrite: boolean; refused?: Refusal }) {
  return (
    <>
      <h1>Groups</h1>
      <div id="groups" data-live class="scroll">
        {list.groups.length === 0 ? (
          <p class="muted">No groups yet.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>Group</th>
                <th>Kind</th>
                <th>Query</th>
                <th>Devices</th>
                <th class="opt">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.groups.map((g) => (
                <tr data-group={g.name}>
                  <td>
                    <a href={`/ui/groups/${encodeURIComponent(g.name)}`}>{g.name}</a>
                  </td>
                  <td>{g.kind}</td>
                  <td>{g.query ? <code>{g.query}</code> : "-"}</td>
                  <td>
                    <a href={`/ui/devices?group=${encodeURIComponent(g.name)}`}>{String(g.devices)}</a>
                  </td>
                  <td class="opt">
                    <Ago at={g.createdAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {canWrite && (
        <section aria-labelledby="h-new-group">
          <h2 id="h-new-group">New group</h2>
          {refused && <Refused message={refused.message} />}
          <form method="post" action="/ui/groups" class="card filters">
            <Csrf token={csrf} />
            <label>
              Group name
              <input name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,62}" value={refused?.typed?.name} />
            </label>
            <label>
              Query (empty: a static group)
              {/* Refused, the form again with the focus in its field most often at fault (the reason names the field when it is the name). */}
              <input name="query" placeholder="region=eu tag=prod hwid=rpi4" value={refused?.typed?.query} autofocus={!!refused} />
            </label>
            <button type="submit" class="primary">
              Create group
            </button>
          </form>
          <p class="muted">
            A query's terms must all match: <code>key=value</code> (a label), <code>tag=T</code>, <code>hwid=H</code>, <code>name~text</code>. Add
            devices to a static group from a device's page.
          </p>
        </section>
      )}
    </>
  );
}

/** `refused`: removing a member, refused: said above the members. */
export function GroupPage({ g, csrf, canWrite, refused }: { g: GroupDetail; csrf: string; canWrite: boolean; refused?: Refusal }) {
  return (
    <>
      <p>
        <a href="/ui/groups">← Groups</a>
      </p>
      <h1>{`Group ${g.name}`}</h1>
      <p class="muted">
        {g.kind === "dynamic" ? (
          <>
            Dynamic: <code>{g.query}</code>, evaluated now: {counted(g.devices, "device")}.
          </>
        ) : (
          `Static: ${counted(g.devices, "device")}.`
        )}{" "}
        <a href={`/ui/devices?group=${encodeURIComponent(g.name)}`}>Show them in the device list</a>
      </p>
      {refused && <Refused message={refused.message} />}
      <div id="group" data-live class="scroll">
        <table>
          <tbody>
            {g.members.map((uuid) => (
              <tr data-member={uuid}>
                <td>
                  <a href={`/ui/devices/${uuid}`}>
                    <code>{uuid}</code>
                  </a>
                </td>
                {canWrite && g.kind === "static" && (
                  <td>
                    <form method="post" action={`/ui/groups/${encodeURIComponent(g.name)}/remove`}>
                      <Csrf token={csrf} />
                      <input type="hidden" name="uuid" value={uuid} />
                      <button type="submit">Remove</button>
                    </form>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        {g.next && <p class="muted">{`Showing the first ${g.members.length}.`}</p>}
      </div>
    </>
  );
}
