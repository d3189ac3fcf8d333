/** A device's HTTPS client for tests: its own key and certificate, trusting only the gateway CA. */
export interface TlsIdentity {
  ca: string;
  cert?: string;
  key?: string;
}

export function tlsFetch(id: TlsIdentity) {
  return (url: string, init: RequestInit = {}) =>
    fetch(url, { ...init, tls: { ca: id.ca, ...(id.cert ? { cert: id.cert, key: id.key } : {}) } } as RequestInit);
}

export const post = (body: unknown, method = "POST", headers: Record<string, string> = {}): RequestInit => ({
  method,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});
