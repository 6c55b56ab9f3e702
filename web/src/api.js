// The REST API under /api/v1 (docs/protocol.md section 6). Every call carries the bearer token;
// failures become ApiError with the contract's code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: a proxy's or the browser's own error page.
  }
  return new ApiError(
    response.status,
    body?.code ?? `HTTP_${response.status}`,
    body?.message ?? response.statusText,
  );
}

// This broker's files, /api/v1/files/<id> and its /thumbnail: the only URLs besides the API
// itself that the page sends the token to. The path of such a URL, or null for anything else: a
// message can name any URL, and an external one is shown as a plain link, never fetched.
const FILE_PATH = /^\/api\/v1\/files\/[A-Za-z0-9]{1,64}(\/thumbnail)?$/;

export function brokerFilePath(url) {
  if (typeof url !== "string") return null;
  let parsed;
  try {
    parsed = new URL(url, location.origin);
  } catch {
    return null;
  }
  const plain = parsed.origin === location.origin && !parsed.username && !parsed.password && !parsed.search && !parsed.hash;
  return plain && FILE_PATH.test(parsed.pathname) ? parsed.pathname : null;
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, body, headers = {}) {
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          ...(body !== undefined && !(body instanceof Blob) ? { "Content-Type": "application/json" } : {}),
          ...headers,
        },
        body: body === undefined ? undefined : body instanceof Blob ? body : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, "UNAVAILABLE", `the broker cannot be reached (${error.message})`);
    }
    if (!response.ok) throw await failure(response);
    if (response.status === 204) return null;
    return response.json();
  }

  conversations(cursor) {
    const query = new URLSearchParams({ limit: "100" });
    if (cursor) query.set("cursor", cursor);
    return this.request("GET", `/conversations?${query}`);
  }
  conversation(id) {
    return this.request("GET", `/conversations/${encodeURIComponent(id)}`);
  }
  privateConversation(peerId) {
    return this.request("POST", "/conversations/private", { peerId });
  }
  settings(id, change) {
    return this.request("PATCH", `/conversations/${encodeURIComponent(id)}/settings`, change);
  }
  announcements() {
    return this.request("GET", "/announcements?limit=20");
  }
  readAnnouncements(upToId) {
    return this.request("POST", "/announcements/read", { upToId });
  }
  contacts() {
    return this.request("GET", "/contacts?limit=100");
  }
  contactRequests(direction) {
    return this.request("GET", `/contact-requests?direction=${direction}&limit=100`);
  }
  askContact(userId, note) {
    return this.request("POST", "/contact-requests", { userId, note });
  }
  decideContact(id, verb) {
    return verb === "cancel"
      ? this.request("DELETE", `/contact-requests/${encodeURIComponent(id)}`)
      : this.request("POST", `/contact-requests/${encodeURIComponent(id)}/${verb}`);
  }
  removeContact(userId) {
    return this.request("DELETE", `/contacts/${encodeURIComponent(userId)}`);
  }
  clearHistory(id) {
    return this.request("POST", `/conversations/${encodeURIComponent(id)}/clear`);
  }
  history(id, { beforeSeq, afterSeq, limit = 30 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (beforeSeq !== undefined) query.set("beforeSeq", String(beforeSeq));
    if (afterSeq !== undefined) query.set("afterSeq", String(afterSeq));
    return this.request("GET", `/conversations/${encodeURIComponent(id)}/messages?${query}`);
  }
  pins(id) {
    return this.request("GET", `/conversations/${encodeURIComponent(id)}/pins`);
  }
  forward(messageIds, toConversationIds) {
    return this.request("POST", "/messages/forward", { messageIds, toConversationIds });
  }
  createGroup(name, memberIds) {
    return this.request("POST", "/groups", { name, memberIds });
  }
  muteMember(id, userId, minutes) {
    return this.request("PUT", `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}/mute`, { minutes });
  }
  unmuteMember(id, userId) {
    return this.request("DELETE", `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}/mute`);
  }
  setNickname(id, nickname) {
    return this.request("PUT", `/groups/${encodeURIComponent(id)}/nickname`, { nickname });
  }
  updateGroup(id, change) {
    return this.request("PATCH", `/groups/${encodeURIComponent(id)}`, change);
  }
  invite(id, userIds) {
    return this.request("POST", `/groups/${encodeURIComponent(id)}/members`, { userIds });
  }
  removeMember(id, userId) {
    return this.request("DELETE", `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
  }
  setRole(id, userId, role) {
    return this.request(
      "PUT",
      `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}/role`,
      { role },
    );
  }
  exitGroup(id) {
    return this.request("POST", `/groups/${encodeURIComponent(id)}/exit`);
  }
  dissolveGroup(id) {
    return this.request("DELETE", `/groups/${encodeURIComponent(id)}`);
  }
  presence(userIds) {
    return this.request("GET", `/presence?userIds=${userIds.map(encodeURIComponent).join(",")}`);
  }
  search(q, cursor) {
    const query = new URLSearchParams({ q, limit: "50" });
    if (cursor) query.set("cursor", cursor);
    return this.request("GET", `/search?${query}`);
  }
  upload(file) {
    const type = file.type || "application/octet-stream";
    return this.request("POST", `/files?name=${encodeURIComponent(file.name)}`, file, { "Content-Type": type });
  }

  // Uploaded files need the bearer token, which an <img src> cannot send: fetch them and hand
  // out object URLs, once per file. Only this broker's files: the token goes nowhere else, not
  // even by a redirect.
  blobUrl(url) {
    const path = brokerFilePath(url);
    if (!path) return Promise.reject(new ApiError(0, "INVALID_ARGUMENT", "not a file of this broker"));
    this.blobs ??= new Map();
    if (!this.blobs.has(path)) {
      const loading = fetch(path, {
        headers: { Authorization: `Bearer ${this.token}` },
        credentials: "same-origin",
        redirect: "error",
        referrerPolicy: "no-referrer",
      }).then(async (r) => {
        if (!r.ok) throw await failure(r);
        return URL.createObjectURL(await r.blob());
      });
      loading.catch(() => this.blobs.delete(path));
      this.blobs.set(path, loading);
    }
    return this.blobs.get(path);
  }
}

// The dev token endpoint answers 400 to an empty body when dev_login is on and 404 when off.
export async function devLoginAvailable() {
  try {
    const response = await fetch("/api/v1/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    return response.status === 400;
  } catch {
    return false;
  }
}

export async function devToken(sub) {
  const response = await fetch("/api/v1/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub }),
  });
  if (!response.ok) throw await failure(response);
  return (await response.json()).token;
}

// The claims of a JWT, unverified: the broker verifies; the page only needs the user id and expiry.
export function claims(token) {
  const part = token.split(".")[1];
  if (!part) throw new Error("not a JWT");
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const text = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
  const parsed = JSON.parse(text);
  if (typeof parsed.sub !== "string") throw new Error("the token has no sub");
  return parsed;
}
