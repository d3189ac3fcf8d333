/* @jsxImportSource hono/jsx */
/** Sign-in: an admin or viewer API token becomes a session cookie (gateway/ui/session.ts). */
export function LoginPage({ error }: { error?: string }) {
  return (
    <>
      <h1>Sign in</h1>
      {error && (
        <p class="msg error" role="alert">
          {error}
        </p>
      )}
      <form method="post" action="/ui/login" class="card" style="max-width:32rem">
        <label>
          API token (admin, or viewer for read-only)
          <input name="token" type="password" autocomplete="current-password" required autofocus />
        </label>
        <p>
          <button type="submit" class="primary">
            Sign in
          </button>
        </p>
        <p class="muted">
          The data dir's admin token, or one made with <code>gateway tokens create --role viewer</code>.
        </p>
      </form>
    </>
  );
}
