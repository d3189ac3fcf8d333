/* @jsxImportSource hono/jsx */
/** Tokens: create a registration token (its secret shown once, with the `fioup register` command), list, revoke. */
import { tokenState, type TokenCreated, type TokenList } from "../../../lib/api/admin.ts";
import type { Refusal } from "../form.ts";
import { Ago, Csrf, Refused } from "../layout.tsx";

export interface TokensProps {
  list: TokenList;
  csrf: string;
  canWrite: boolean;
  created?: TokenCreated & { hwid?: string };
  publicUrl: string;
  /** A token not created (`form: "create"`: the form keeps what was typed) or not revoked: said above the form. */
  refused?: Refusal;
}


/** The create form's choices of lifetime. */
const EXPIRES_IN = [
  ["1d", "1 day"],
  ["7d", "7 days"],
  ["30d", "30 days"],
  ["365d", "1 year"],
] as const;

/** When a token expires ("in 30 d"), or that it has ("expired 3 h ago"). */
const Expires = ({ t }: { t: { expiresAt: string; expired: boolean } }) => (
  <>
    {t.expired && "expired "}
    <Ago at={t.expiresAt} />
  </>
);

export function TokensPage({ list, csrf, canWrite, created, publicUrl, refused }: TokensProps) {
  const typed = refused?.form === "create" ? refused.typed : undefined;
  const expiresIn = typed?.expiresIn ?? "30d";
  const command = created && `fioup register --server ${publicUrl} --token ${created.token}${created.hwid ? ` --hwid ${created.hwid}` : ""}`;
  return (
    <>
      <h1>Tokens</h1>
      {created && (
        <section class="card" aria-labelledby="h-new" role="status">
          <h2 id="h-new">New registration token</h2>
          <p>Copy it now: it is not shown again.</p>
          <p class="secret" id="new-token">
            {created.token}
          </p>
          <button type="button" data-copy="new-token">
            Copy token
          </button>
          <p>Register a device with:</p>
          <pre id="register-command">{command}</pre>
          <button type="button" data-copy="register-command">
            Copy command
          </button>
        </section>
      )}
      {refused && <Refused message={refused.message} />}
      {canWrite && (
        <form method="post" action="/ui/tokens" class="filters card" aria-label="Create a registration token">
          <Csrf token={csrf} />
          <label>
            Name
            <input name="name" maxlength={128} value={typed?.name} />
          </label>
          <label>
            Tags (comma-separated)
            {/* Refused, the form again with the focus in its field most often at fault (the reason names the field when it is another). */}
            <input name="tags" value={typed?.tags} autofocus={!!typed} />
          </label>
          <label>
            Hardware id
            <input name="hwid" value={typed?.hwid} />
          </label>
          <label>
            Devices it may register
            <input name="maxUses" type="number" min="1" value={typed?.maxUses ?? "1"} />
          </label>
          <label>
            Expires in
            <select name="expiresIn">
              {EXPIRES_IN.map(([value, label]) => (
                <option value={value} selected={value === expiresIn}>
                  {label}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" class="primary">
            Create registration token
          </button>
        </form>
      )}
      <h2>Registration tokens</h2>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th class="opt">Tags / hardware id</th>
              <th>Uses</th>
              <th class="opt">Expires</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {[...list.tokens].reverse().map((t) => (
              <tr data-token={t.id}>
                <td>
                  <TokenName t={t} />
                </td>
                <td>
                  <span class={`badge s-${tokenState(t) === "active" ? "up-to-date" : "offline"}`}>{tokenState(t)}</span>
                </td>
                <td class="opt">
                  {t.tags.join(", ") || "-"} / {t.hwid ?? "any"}
                </td>
                <td>
                  {t.uses} / {t.maxUses ?? "∞"}
                </td>
                <td class="opt">
                  <Expires t={t} />
                </td>
                {/* Only an active token is offered Revoke: a used-up one registers nothing more. */}
                <td>
                  {canWrite && tokenState(t) === "active" && (
                    <RevokeButton id={t.id} csrf={csrf} confirm={`Revoke registration token ${tokenName(t)}? No device can register with it any more.`} />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>API tokens</h2>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
              <th>State</th>
              <th class="opt">Expires</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {list.apiTokens.map((t) => (
              <tr data-token={t.id}>
                <td>
                  <TokenName t={t} />
                </td>
                <td>{t.role}</td>
                <td>{tokenState(t)}</td>
                <td class="opt">
                  <Expires t={t} />
                </td>
                <td>
                  {canWrite && tokenState(t) === "active" && (
                    <RevokeButton id={t.id} csrf={csrf} confirm={`Revoke ${t.role} token ${tokenName(t)}? Whatever uses it, a dashboard session too, is refused from now on.`} />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p class="muted">
        API tokens (publish, admin, viewer) are made with <code>gateway tokens create --role ROLE</code>.
      </p>
    </>
  );
}

/** How a token is named, in its row and in the confirmation of its revocation: its name, else (none, or an empty one) its id's start. */
const naming = (t: { id: string; name: string | null }) => (t.name ? { name: t.name } : { id: t.id.slice(0, 8) });

/** A token in its row: its name, else its id's start, muted. */
const TokenName = ({ t }: { t: { id: string; name: string | null } }) => {
  const n = naming(t);
  return <>{"name" in n ? n.name : <span class="muted">{n.id}</span>}</>;
};

/** A token in the confirmation of its revocation: its name quoted, else its id's start. */
const tokenName = (t: { id: string; name: string | null }) => {
  const n = naming(t);
  return "name" in n ? `"${n.name}"` : n.id;
};

/** The one revoke action of a token row (registration or API token alike); `confirm` names the token. */
function RevokeButton({ id, csrf, confirm }: { id: string; csrf: string; confirm: string }) {
  return (
    <form method="post" action={`/ui/tokens/${id}/revoke`} data-confirm={confirm}>
      <Csrf token={csrf} />
      <button type="submit" class="danger">
        Revoke
      </button>
    </form>
  );
}
