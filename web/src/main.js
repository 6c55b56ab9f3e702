// The demo chat client: sign-in, then the conversation list, the chat view and the side panels,
// kept current by the STOMP session and re-synced by seq after every reconnect.
import "./style.css";
import { Api, ApiError, brokerFilePath, claims, devLoginAvailable, devToken } from "./api.js";
import { Session } from "./session.js";
import {
  chatOf,
  findMessage,
  lastSeqOf,
  messagesOf,
  previewOf,
  putMessage,
  sortedConversations,
  state,
  titleOf,
} from "./state.js";
import { bytes, clear, h, highlight, time } from "./dom.js";

const TOKEN_KEY = "broker.token";
const RECALL_WINDOW_MS = 120_000;
const TYPING_SEND_EVERY_MS = 2_000;
const TYPING_SHOWN_MS = 4_000;

const app = document.getElementById("app");
let api = null;
let session = null;
let lastTypingSent = 0;
const ui = {};

// ---------------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------------

async function showSignIn(problem) {
  const tokenInput = h("textarea", { id: "token", rows: 4, placeholder: "eyJhbGciOi…", spellcheck: "false" });
  const nameInput = h("input", { id: "dev-name", placeholder: "alice", autocomplete: "username" });
  const error = h("p", { class: "error", role: "alert" }, problem ?? "");
  const devForm = h(
    "form",
    {
      class: "dev-login",
      hidden: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const name = nameInput.value.trim();
        try {
          start(await devToken(name));
        } catch (e) {
          error.textContent = `${e.code ?? "ERROR"}: ${e.message}`;
        }
      },
    },
    h("label", { for: "dev-name" }, "User id"),
    h("div", { class: "row" }, nameInput, h("button", { type: "submit" }, "Try as this user")),
  );
  clear(
    app,
    h(
      "main",
      { class: "signin" },
      h("h1", {}, "broker chat"),
      h(
        "form",
        {
          onsubmit: (event) => {
            event.preventDefault();
            start(tokenInput.value.trim());
          },
        },
        h("label", { for: "token" }, "Paste a token"),
        tokenInput,
        h(
          "p",
          { class: "hint" },
          "Make one with ",
          h("code", {}, "broker token --sub <name>"),
          " (from the repository: ",
          h("code", {}, "cargo run --release -- token --sub <name>"),
          ")",
        ),
        h("button", { type: "submit" }, "Sign in"),
      ),
      devForm,
      error,
    ),
  );
  tokenInput.focus();
  if (await devLoginAvailable()) {
    devForm.hidden = false;
    nameInput.focus();
  }
}

function start(token) {
  let me;
  try {
    const parsed = claims(token);
    if (parsed.exp && parsed.exp * 1000 < Date.now()) throw new Error("the token has expired");
    me = parsed.sub;
  } catch (e) {
    showSignIn(`Not a usable token: ${e.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.me = me;
  api = new Api(token);
  buildShell();
  session = new Session(token, {
    onStatus: (status) => {
      state.status = status;
      renderStatus();
    },
    onConnected: () => resync().catch(showError),
    onEvent: onEvent,
    onUnauthorized: (reason) => signOut(`The broker refused the token: ${reason}`),
  });
  session.start();
}

function signOut(problem) {
  sessionStorage.removeItem(TOKEN_KEY);
  session?.stop();
  for (const key of Object.keys(state)) {
    if (state[key] instanceof Map) state[key].clear();
  }
  state.notifications = [];
  state.openId = null;
  showSignIn(problem);
}

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

function buildShell() {
  ui.status = h("span", { class: "status", role: "status" });
  ui.list = h("ul", { class: "conversations", "aria-label": "Conversations" });
  ui.searchInput = h("input", { id: "search", type: "search", placeholder: "Search messages" });
  ui.searchResults = h("div", { class: "search-results", hidden: true, "aria-label": "Search results" });
  ui.notifyButton = h("button", { type: "button", onclick: () => togglePanel("notifications") }, "Notifications");
  ui.archived = h("input", {
    id: "show-archived",
    type: "checkbox",
    onchange: () => {
      state.showArchived = ui.archived.checked;
      renderList();
    },
  });
  ui.chat = h("section", { class: "chat", "aria-label": "Chat" });
  ui.panel = h("aside", { class: "panel", hidden: true });
  ui.layout = h(
    "div",
    { class: "layout" },
    h(
      "nav",
      { class: "sidebar", "aria-label": "Conversation list" },
      h(
        "header",
        { class: "me" },
        h("strong", { class: "me-name" }, state.me),
        ui.status,
        h("button", { type: "button", class: "link", onclick: () => signOut() }, "Sign out"),
      ),
      h(
        "div",
        { class: "tools" },
        h("button", { type: "button", onclick: newChatDialog }, "New chat"),
        h("button", { type: "button", onclick: newGroupDialog }, "New group"),
        ui.notifyButton,
      ),
      h(
        "form",
        { class: "search", role: "search", onsubmit: onSearch },
        h("label", { for: "search", class: "sr-only" }, "Search messages"),
        ui.searchInput,
        h("button", { type: "submit" }, "Search"),
      ),
      ui.searchResults,
      ui.list,
      h("label", { class: "archived-toggle" }, ui.archived, " Show archived"),
    ),
    ui.chat,
    ui.panel,
  );
  ui.dialog = h("dialog", { class: "dialog" });
  clear(app, ui.layout, ui.dialog);
  renderStatus();
  renderChat();
}

function renderStatus() {
  if (!ui.status) return;
  const labels = { online: "online", connecting: "connecting…", offline: "reconnecting…", error: "reconnecting…" };
  ui.status.textContent = labels[state.status] ?? state.status;
  ui.status.dataset.state = state.status;
}

function showError(error) {
  const text = error instanceof ApiError || error?.code ? `${error.code}: ${error.message}` : String(error?.message ?? error);
  const box = ui.errors;
  if (!box) return;
  const item = h("div", { class: "error-item" }, text, h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"));
  box.append(item);
  setTimeout(() => item.remove(), 8000);
}

// ---------------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------------

async function loadConversations() {
  const seen = new Set();
  let cursor = null;
  do {
    const page = await api.conversations(cursor);
    for (const conversation of page.items) {
      seen.add(conversation.id);
      upsertConversation(conversation);
    }
    cursor = page.nextCursor;
  } while (cursor);
  for (const id of [...state.conversations.keys()]) {
    if (!seen.has(id)) forgetConversation(id);
  }
}

// Merges a list entry from the broker. Pushes and answers race, so positions only move forward:
// the newest message and last seq by seq, and the read position (`seenSeq`: last seq minus the
// broker's unread count, which also covers messages from before the user joined) by maximum.
// The unread count is then derived, never counted up, so no order of events can skew it.
function upsertConversation(conversation) {
  const known = state.conversations.get(conversation.id);
  const merged = { ...known, ...conversation };
  if (conversation.lastSeq !== undefined && conversation.unreadCount !== undefined) {
    merged.seenSeq = Math.max(known?.seenSeq ?? 0, conversation.lastSeq - conversation.unreadCount);
  }
  if (known) {
    merged.lastSeq = Math.max(known.lastSeq ?? 0, conversation.lastSeq ?? 0);
    if ((known.lastMessage?.seq ?? 0) > (conversation.lastMessage?.seq ?? 0)) merged.lastMessage = known.lastMessage;
  }
  state.conversations.set(conversation.id, merged);
  recount(merged);
  follow(conversation);
  // A chat found after the last sync: its peer's presence events only tell of changes, so ask
  // for the current state once.
  if (!known && conversation.type === "private" && conversation.peerId && session?.connected) {
    api.presence([conversation.peerId]).then((entries) => {
      for (const entry of entries) state.presence.set(entry.userId, entry);
      renderList();
      renderChatHeader();
    }, () => {});
  }
}

// The list entry of a conversation that started elsewhere, fetched once however many pushes
// arrive before the answer.
const fetching = new Set();
function fetchConversation(id) {
  if (fetching.has(id)) return;
  fetching.add(id);
  api
    .conversation(id)
    .then((c) => {
      upsertConversation(c);
      renderList();
    }, showError)
    .finally(() => fetching.delete(id));
}

// Brings the last message and unread count up to what the loaded messages show.
function recount(conversation) {
  const chat = chatOf(conversation.id);
  const last = lastSeqOf(conversation.id);
  if (last > (conversation.lastSeq ?? 0)) conversation.lastSeq = last;
  if (last > 0 && last >= (conversation.lastMessage?.seq ?? 0)) conversation.lastMessage = chat.bySeq.get(last);
  if (state.openId === conversation.id && document.visibilityState === "visible") {
    // Reading it now: markRead moves the position on the broker.
    conversation.unreadCount = 0;
    return;
  }
  conversation.unreadCount = Math.max(0, (conversation.lastSeq ?? 0) - (conversation.seenSeq ?? 0));
}

function forgetConversation(id) {
  state.conversations.delete(id);
  session.unfollow(`/topic/group.${id}`);
  if (state.openId === id) openConversation(null);
}

function follow(conversation) {
  if (conversation.type === "group" && conversation.status !== "dissolved") {
    session.follow(`/topic/group.${conversation.id}`);
  }
  if (conversation.type === "private" && conversation.peerId) {
    session.follow(`/topic/presence.${conversation.peerId}`);
  }
}

// After every (re)connect: the list again, then each loaded conversation from its last known seq,
// then whatever was typed while offline.
async function resync() {
  await loadConversations();
  await loadPresence();
  for (const [id, chat] of state.chats) {
    if (chat.loaded && state.conversations.has(id)) await catchUp(id);
  }
  if (state.openId && !chatOf(state.openId).loaded) await loadHistory(state.openId);
  flushPending();
  renderList();
  refreshChat();
  markRead();
}

async function catchUp(id) {
  for (;;) {
    const after = lastSeqOf(id);
    const page = await api.history(id, { afterSeq: after, limit: 100 });
    for (const message of page.items) putMessage(message);
    if (page.items.length < 100) break;
  }
}

async function loadPresence() {
  const peers = [...state.conversations.values()].filter((c) => c.type === "private" && c.peerId).map((c) => c.peerId);
  for (let i = 0; i < peers.length; i += 200) {
    for (const entry of await api.presence(peers.slice(i, i + 200))) state.presence.set(entry.userId, entry);
  }
}

// The latest page; callers that arrive while it loads share the one request.
function loadHistory(id) {
  const chat = chatOf(id);
  chat.firstPage ??= (async () => {
    chat.loading = true;
    try {
      const page = await api.history(id, { limit: 30 });
      for (const message of page.items) putMessage(message);
      chat.hasMore = page.items.length === 30;
      chat.loaded = true;
    } finally {
      chat.loading = false;
      chat.firstPage = null;
    }
  })();
  return chat.firstPage;
}

async function loadOlder(id) {
  const chat = chatOf(id);
  if (chat.loading || !chat.hasMore) return;
  const seqs = [...chat.bySeq.keys()];
  if (seqs.length === 0) return;
  chat.loading = true;
  try {
    const page = await api.history(id, { beforeSeq: Math.min(...seqs), limit: 30 });
    for (const message of page.items) putMessage(message);
    chat.hasMore = page.items.length === 30;
  } finally {
    chat.loading = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Events from the broker
// ---------------------------------------------------------------------------------------------

function onEvent(event, body, source) {
  switch (event) {
    case "message.new":
      return onMessage(body);
    case "notification.new":
      state.notifications.unshift(body);
      if (state.panel !== "notifications") state.unseenNotifications += 1;
      onMessage(body);
      return renderPanel();
    case "message.recalled":
      return onRecalled(body);
    case "message.delivered":
      return setStatus(body.conversationId, (m) => m.seq === body.seq || m.id === body.messageId, "delivered");
    case "message.read":
      if (body.readerId === state.me) return;
      return setStatus(body.conversationId, (m) => m.senderId === state.me && m.seq <= body.upToSeq, "read");
    case "conversation.updated":
      return onConversationUpdated(body);
    case "typing":
      return onTyping(body);
    case "presence":
      state.presence.set(body.userId, body);
      renderList();
      return renderChatHeader();
    case "member.added":
    case "member.removed":
    case "member.role":
    case "group.updated":
    case "group.dissolved":
      return onGroupChange(event, body);
    case "error":
      return onAppError(body, source);
    default:
      return undefined;
  }
}

function onMessage(message) {
  putMessage(message);
  const id = message.conversationId;
  if (state.typing.get(id)?.userId === message.senderId) state.typing.delete(id);
  const conversation = state.conversations.get(id);
  if (!conversation) {
    fetchConversation(id);
    return;
  }
  if (message.senderId === state.me) conversation.seenSeq = Math.max(conversation.seenSeq ?? 0, message.seq);
  recount(conversation);
  renderList();
  if (state.openId === id) {
    renderMessages({ stick: true });
    renderChatHeader();
    markRead();
  }
}

function onRecalled(body) {
  const chat = chatOf(body.conversationId);
  const message = chat.bySeq.get(body.seq);
  if (message) {
    message.status = "recalled";
    message.content = "";
    message.attachment = null;
  }
  const conversation = state.conversations.get(body.conversationId);
  if (conversation?.lastMessage?.id === body.messageId) {
    conversation.lastMessage = { ...conversation.lastMessage, status: "recalled", content: "" };
  }
  renderList();
  if (state.openId === body.conversationId) renderMessages();
}

function setStatus(conversationId, matches, status) {
  const chat = chatOf(conversationId);
  for (const message of chat.bySeq.values()) {
    if (message.status !== "recalled" && message.status !== "read" && matches(message)) message.status = status;
  }
  if (state.openId === conversationId) renderMessages();
}

function onConversationUpdated(body) {
  if (body.removed) {
    forgetConversation(body.id);
    renderList();
    return;
  }
  const id = body.id ?? body.conversationId;
  const known = state.conversations.get(id);
  if (body.type) {
    upsertConversation(body);
  } else if (known) {
    // Read on another device.
    known.seenSeq = Math.max(known.seenSeq ?? 0, body.readSeq ?? 0);
    known.readSeq = Math.max(known.readSeq ?? 0, body.readSeq ?? 0);
    recount(known);
  } else {
    fetchConversation(id);
  }
  renderList();
  if (state.openId === id) renderChatHeader();
}

function onTyping(body) {
  if (body.userId === state.me) return;
  state.typing.set(body.conversationId, { userId: body.userId, until: Date.now() + TYPING_SHOWN_MS });
  setTimeout(() => {
    const typing = state.typing.get(body.conversationId);
    if (typing && typing.until <= Date.now()) {
      state.typing.delete(body.conversationId);
      renderList();
      renderChatHeader();
    }
  }, TYPING_SHOWN_MS + 50);
  renderList();
  renderChatHeader();
}

function onGroupChange(event, body) {
  const id = body.conversationId;
  const conversation = state.conversations.get(id);
  if (conversation && event === "group.updated") {
    Object.assign(conversation, {
      name: body.name,
      avatar: body.avatar,
      announcement: body.announcement,
      allowInvite: body.allowInvite,
    });
  }
  if (conversation && event === "group.dissolved") conversation.status = "dissolved";
  if (conversation && event === "member.added") conversation.memberCount += body.userIds?.length ?? 0;
  if (conversation && event === "member.removed") conversation.memberCount -= 1;
  if (event === "member.removed" && body.userId === state.me) {
    forgetConversation(id);
  } else if (state.groups.has(id) || state.openId === id) {
    refreshGroup(id);
  }
  renderList();
  if (state.openId === id) refreshChat();
}

function onAppError(body) {
  for (const chat of state.chats.values()) {
    const pending = body.clientMsgId && chat.pending.get(body.clientMsgId);
    if (pending) pending.failed = `${body.code}: ${body.message}`;
  }
  showError(body);
  renderMessages();
}

// ---------------------------------------------------------------------------------------------
// Conversation list and search
// ---------------------------------------------------------------------------------------------

function renderList() {
  if (!ui.list) return;
  const items = sortedConversations().map((c) => {
    const peerOnline = c.type === "private" && state.presence.get(c.peerId)?.online;
    const typing = state.typing.get(c.id);
    const preview = typing ? `${typing.userId} is typing…` : previewOf(c.lastMessage);
    return h(
      "li",
      { class: `conversation${c.id === state.openId ? " open" : ""}`, dataset: { conversationId: c.id } },
      h(
        "button",
        {
          type: "button",
          class: "conversation-button",
          "aria-current": c.id === state.openId ? "true" : undefined,
          onclick: () => openConversation(c.id),
        },
        h("span", { class: `avatar ${c.type}`, "aria-hidden": "true" }, titleOf(c).slice(0, 1).toUpperCase(), c.type === "private" ? h("span", { class: `dot${peerOnline ? " online" : ""}` }) : null),
        h(
          "span",
          { class: "summary" },
          h(
            "span",
            { class: "title-row" },
            h("span", { class: "title" }, titleOf(c)),
            c.pinned ? h("span", { class: "flag" }, "pinned") : null,
            c.muted ? h("span", { class: "flag" }, "muted") : null,
            c.archived ? h("span", { class: "flag" }, "archived") : null,
            h("span", { class: "when" }, c.lastMessage ? time(c.lastMessage.createdAt) : ""),
          ),
          h(
            "span",
            { class: "preview-row" },
            h("span", { class: `preview${typing ? " typing" : ""}` }, preview),
            c.unreadCount > 0 ? h("span", { class: `badge${c.muted ? " muted" : ""}`, "aria-label": `${c.unreadCount} unread` }, String(c.unreadCount)) : null,
          ),
        ),
      ),
    );
  });
  clear(ui.list, items.length ? items : h("li", { class: "empty" }, "No conversations yet. Start one with New chat."));
  ui.notifyButton.textContent = state.unseenNotifications ? `Notifications (${state.unseenNotifications})` : "Notifications";
}

async function onSearch(event) {
  event.preventDefault();
  const q = ui.searchInput.value.trim();
  if (!q) {
    ui.searchResults.hidden = true;
    return;
  }
  try {
    const page = await api.search(q);
    state.search = { q, items: page.items };
  } catch (e) {
    state.search = { q, items: [], error: e };
  }
  renderSearch();
}

function renderSearch() {
  const { q, items, error } = state.search;
  ui.searchResults.hidden = false;
  clear(
    ui.searchResults,
    h(
      "div",
      { class: "search-head" },
      h("span", { role: "status" }, error ? `${error.code}: ${error.message}` : `${items.length} result${items.length === 1 ? "" : "s"} for “${q}”`),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            ui.searchResults.hidden = true;
            ui.searchInput.value = "";
          },
        },
        "Close",
      ),
    ),
    h(
      "ul",
      { class: "hits" },
      items.map((m) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "hit", onclick: () => openConversation(m.conversationId, m.seq) },
            h("span", { class: "hit-where" }, hitPlace(m)),
            h("span", { class: "hit-text" }, highlight(m.content, q)),
          ),
        ),
      ),
    ),
  );
}

function hitPlace(message) {
  const where = titleOf(state.conversations.get(message.conversationId)) || message.conversationId;
  const who = message.senderId === where ? "" : ` · ${message.senderId}`;
  return `${where}${who} · ${time(message.createdAt)}`;
}

// ---------------------------------------------------------------------------------------------
// Chat view
// ---------------------------------------------------------------------------------------------

async function openConversation(id, seq) {
  state.openId = id;
  state.replyTo = null;
  state.attachment = null;
  ui.layout?.classList.toggle("chat-open", Boolean(id));
  renderList();
  renderChat();
  if (!id) return;
  const conversation = state.conversations.get(id);
  try {
    if (!chatOf(id).loaded) await loadHistory(id);
    // A search hit older than the loaded page: page back until it is there.
    while (seq && !chatOf(id).bySeq.has(seq) && chatOf(id).hasMore) await loadOlder(id);
    if (conversation?.type === "group") await refreshGroup(id);
  } catch (e) {
    showError(e);
  }
  if (state.openId !== id) return;
  refreshChat();
  if (seq) ui.messages?.querySelector(`[data-seq="${seq}"]`)?.scrollIntoView({ block: "center" });
  markRead();
  ui.text?.focus();
}

async function refreshGroup(id) {
  try {
    const view = await api.conversation(id);
    state.groups.set(id, view);
    const conversation = state.conversations.get(id);
    if (conversation) conversation.memberCount = view.memberCount;
  } catch (e) {
    if (e.code === "NOT_FOUND" || e.code === "NOT_MEMBER") return forgetConversation(id);
    throw e;
  }
  if (state.openId === id) {
    renderChatHeader();
    renderPanel();
  }
}

function myRole(id) {
  return state.groups.get(id)?.members?.find((m) => m.userId === state.me)?.role;
}

function markRead() {
  const id = state.openId;
  const conversation = state.conversations.get(id);
  if (!conversation || document.visibilityState !== "visible") return;
  const last = Math.max(lastSeqOf(id), conversation.lastSeq ?? 0);
  if (last > (conversation.readSeq ?? 0) || last > (conversation.seenSeq ?? 0)) {
    if (session.publish("/app/message.read", { conversationId: id, upToSeq: last })) {
      conversation.readSeq = last;
      conversation.seenSeq = last;
      conversation.unreadCount = 0;
      renderList();
    }
  }
}

// Re-renders the open chat, keeping the composer (and what is typed in it) when the chat is
// already on screen.
function refreshChat() {
  const conversation = state.conversations.get(state.openId);
  if (ui.chatFor && ui.chatFor === state.openId && ui.chatStatus === conversation?.status) {
    renderChatHeader();
    renderMessages();
  } else {
    renderChat();
  }
}

function renderChat() {
  if (!ui.chat) return;
  const conversation = state.conversations.get(state.openId);
  ui.chatFor = conversation?.id ?? null;
  ui.chatStatus = conversation?.status;
  if (!conversation) {
    ui.messages = null;
    clear(ui.chat, h("div", { class: "placeholder" }, h("p", {}, "Pick a conversation, or start one with New chat.")));
    ui.errors = h("div", { class: "errors", role: "alert" });
    ui.chat.append(ui.errors);
    return;
  }
  ui.header = h("header", { class: "chat-head" });
  ui.announcement = h("div", { class: "announcement", role: "note" });
  ui.messages = h("div", { class: "messages", role: "log", "aria-label": "Messages", tabindex: "0", onscroll: onMessagesScroll });
  ui.errors = h("div", { class: "errors", role: "alert" });
  ui.composer = buildComposer(conversation);
  clear(ui.chat, ui.header, ui.announcement, ui.messages, ui.errors, ui.composer);
  renderChatHeader();
  renderMessages({ stick: true });
}

function renderChatHeader() {
  const conversation = state.conversations.get(state.openId);
  if (!conversation || !ui.header) return;
  const typing = state.typing.get(conversation.id);
  let sub = "";
  if (typing) sub = `${typing.userId} is typing…`;
  else if (conversation.type === "private") {
    const presence = state.presence.get(conversation.peerId);
    sub = presence?.online ? "online" : presence?.lastSeenAt ? `last seen ${time(presence.lastSeenAt)}` : "offline";
  } else if (conversation.type === "group") {
    sub = conversation.status === "dissolved" ? "dissolved" : `${conversation.memberCount} members`;
  }
  const toggle = (label, key) =>
    h(
      "button",
      {
        type: "button",
        class: "toggle",
        "aria-pressed": conversation[key] ? "true" : "false",
        onclick: async () => {
          try {
            upsertConversation(await api.settings(conversation.id, { [key]: !conversation[key] }).then((r) => r ?? { ...conversation, [key]: !conversation[key] }));
          } catch (e) {
            showError(e);
          }
          renderList();
          renderChatHeader();
        },
      },
      label,
    );
  const online = conversation.type === "private" && state.presence.get(conversation.peerId)?.online;
  clear(
    ui.header,
    h("button", { type: "button", class: "back", "aria-label": "Back to conversations", onclick: () => openConversation(null) }, "‹"),
    h(
      "div",
      { class: "chat-title" },
      h("h2", {}, conversation.type === "private" ? h("span", { class: `dot${online ? " online" : ""}`, "aria-label": online ? "online" : "offline" }) : null, titleOf(conversation)),
      h("span", { class: `chat-sub${typing ? " typing" : ""}`, "aria-live": "polite" }, sub),
    ),
    h(
      "div",
      { class: "chat-actions" },
      toggle("Pin", "pinned"),
      toggle("Mute", "muted"),
      toggle("Archive", "archived"),
      conversation.type === "group" ? h("button", { type: "button", onclick: () => togglePanel("group") }, "Group") : null,
    ),
  );
  const announcement = conversation.announcement || state.groups.get(conversation.id)?.announcement;
  ui.announcement.hidden = !announcement;
  clear(ui.announcement, announcement ? [h("strong", {}, "Announcement: "), announcement] : []);
}

function onMessagesScroll() {
  const id = state.openId;
  if (!id || !ui.messages || ui.messages.scrollTop > 40) return;
  const chat = chatOf(id);
  if (!chat.hasMore) return;
  if (chat.loading) {
    // No scroll event may follow: look again once this load is done.
    setTimeout(onMessagesScroll, 200);
    return;
  }
  const before = ui.messages.scrollHeight;
  loadOlder(id).then(() => {
    if (state.openId !== id) return;
    renderMessages();
    ui.messages.scrollTop += ui.messages.scrollHeight - before;
  }, showError);
}

function renderMessages({ stick = false } = {}) {
  const id = state.openId;
  const box = ui.messages;
  if (!id || !box) return;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const top = box.scrollTop;
  const conversation = state.conversations.get(id);
  const chat = chatOf(id);
  const items = messagesOf(id).map((m) => renderMessage(m, conversation));
  clear(
    box,
    chat.hasMore && chat.loaded ? h("div", { class: "older" }, "Scroll up for older messages") : chat.loaded ? h("div", { class: "older" }, "Start of the conversation") : null,
    items,
  );
  if (stick || nearBottom) box.scrollTop = box.scrollHeight;
  else box.scrollTop = top;
}

function renderMessage(m, conversation) {
  const mine = m.senderId === state.me;
  const pending = !m.seq;
  const recalled = m.status === "recalled";
  const role = conversation.type === "group" ? myRole(conversation.id) : null;
  const canRecall = !pending && !recalled && ((mine && Date.now() - m.createdAt < RECALL_WINDOW_MS) || role === "owner" || role === "admin");
  const quoted = m.replyTo ? findMessage(m.replyTo) : null;
  const status = pending ? (m.failed ? "failed" : "sending") : m.status;
  return h(
    "article",
    {
      class: `msg ${mine ? "mine" : "theirs"}${recalled ? " recalled" : ""}${pending ? " pending" : ""}`,
      dataset: { seq: m.seq ?? "", clientMsgId: m.clientMsgId, status, id: m.id ?? "" },
      "aria-label": `${mine ? "You" : m.senderId}: ${previewOf(m)}`,
    },
    !mine && conversation.type !== "private" ? h("div", { class: "sender" }, m.senderId) : null,
    m.forwardedFrom ? h("div", { class: "forwarded" }, `Forwarded from ${m.forwardedFrom.senderId}`) : null,
    m.replyTo ? h("div", { class: "quote" }, quoted ? `${quoted.senderId}: ${previewOf(quoted)}` : "a message") : null,
    h("div", { class: "body" }, recalled ? h("em", {}, mine ? "You recalled a message" : "Message recalled") : renderBody(m)),
    h(
      "div",
      { class: "meta" },
      h("time", { datetime: new Date(m.createdAt).toISOString() }, time(m.createdAt)),
      mine && conversation.type === "private" ? h("span", { class: `ticks ${status}`, "aria-label": status }, ticks(status)) : null,
      mine && conversation.type !== "private" && pending ? h("span", { class: `ticks ${status}`, "aria-label": status }, ticks(status)) : null,
    ),
    m.failed
      ? h(
          "div",
          { class: "failed" },
          m.failed,
          " ",
          h("button", { type: "button", class: "link", onclick: () => retry(m) }, "Retry"),
          h("button", { type: "button", class: "link", onclick: () => discard(m) }, "Discard"),
        )
      : null,
    !pending && !recalled
      ? h(
          "div",
          { class: "actions" },
          conversation.type !== "system" ? h("button", { type: "button", class: "link", onclick: () => startReply(m) }, "Reply") : null,
          h("button", { type: "button", class: "link", onclick: () => forwardDialog(m) }, "Forward"),
          canRecall ? h("button", { type: "button", class: "link", onclick: () => recall(m) }, "Recall") : null,
        )
      : null,
  );
}

function ticks(status) {
  return { sending: "…", failed: "!", sent: "✓", delivered: "✓✓", read: "✓✓" }[status] ?? "";
}

function renderBody(m) {
  const a = m.attachment;
  // An attachment elsewhere than this broker's files: a plain link, never fetched by the page
  // (no <img>, no token).
  if (["image", "file", "voice", "video"].includes(m.format) && a?.url && !m.localPreview && !brokerFilePath(a.url)) {
    return externalLink(a);
  }
  switch (m.format) {
    case "image": {
      const img = h("img", { alt: a?.name ?? "image", width: a?.width, height: a?.height, loading: "lazy" });
      const source = m.localPreview ?? null;
      if (source) img.src = source;
      else if (a?.url) {
        const shown = brokerFilePath(a.thumbnailUrl) ? a.thumbnailUrl : a.url;
        api.blobUrl(shown).then((u) => (img.src = u), () => (img.alt = "image unavailable"));
      }
      return h("button", { type: "button", class: "image", "aria-label": `Open image ${a?.name ?? ""}`, onclick: () => openFile(a) }, img);
    }
    case "file":
    case "voice":
    case "video":
      return h("button", { type: "button", class: "file", onclick: () => openFile(a) }, `${a?.name ?? "file"} (${bytes(a?.size ?? 0)})`);
    case "card":
      return h("div", { class: "card" }, h("strong", {}, a?.title ?? ""), h("p", {}, a?.summary ?? m.content));
    default:
      return h("p", { class: "text" }, m.content);
  }
}

// A link to an external attachment: opened by the user in a new tab, without the page's
// referrer or any access to the page; only http(s) URLs become links.
function externalLink(a) {
  let href = null;
  try {
    const url = new URL(a.url);
    if (url.protocol === "https:" || url.protocol === "http:") href = url.href;
  } catch {
    // Not a URL: shown as text.
  }
  const label = `${a.name ?? a.url} (external link)`;
  if (!href) return h("p", { class: "file external" }, label);
  return h("a", { class: "file external", href, target: "_blank", rel: "noopener noreferrer", referrerpolicy: "no-referrer" }, label);
}

async function openFile(attachment) {
  if (!brokerFilePath(attachment?.url)) return;
  try {
    const url = await api.blobUrl(attachment.url);
    const link = h("a", { href: url, download: attachment.name, target: "_blank", rel: "noopener" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Composer: text, reply, attachments, typing
// ---------------------------------------------------------------------------------------------

function buildComposer(conversation) {
  if (conversation.type === "system" || conversation.status === "dissolved") {
    return h("div", { class: "composer readonly" }, conversation.type === "system" ? "Notifications are read-only." : "This group was dissolved.");
  }
  ui.text = h("textarea", {
    id: "message-text",
    rows: 1,
    placeholder: "Message",
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ui.form.requestSubmit();
      }
    },
    oninput: () => {
      if (Date.now() - lastTypingSent > TYPING_SEND_EVERY_MS && ui.text.value) {
        lastTypingSent = Date.now();
        session.publish("/app/typing", { conversationId: state.openId });
      }
    },
  });
  ui.file = h("input", { id: "attach", type: "file", class: "sr-only", onchange: onFileChosen });
  ui.replyBar = h("div", { class: "reply-bar", hidden: true });
  ui.attachmentBar = h("div", { class: "attachment-bar", hidden: true });
  ui.form = h(
    "form",
    { class: "composer-row", onsubmit: onSend },
    h("label", { for: "attach", class: "attach", title: "Attach an image or file" }, "+", h("span", { class: "sr-only" }, "Attach a file"), ui.file),
    h("label", { for: "message-text", class: "sr-only" }, "Message"),
    ui.text,
    h("button", { type: "submit", class: "send" }, "Send"),
  );
  return h("div", { class: "composer" }, ui.replyBar, ui.attachmentBar, ui.form);
}

function startReply(message) {
  state.replyTo = message;
  ui.replyBar.hidden = false;
  clear(
    ui.replyBar,
    h("span", {}, `Replying to ${message.senderId}: ${previewOf(message).slice(0, 80)}`),
    h("button", { type: "button", class: "link", "aria-label": "Cancel reply", onclick: cancelReply }, "×"),
  );
  ui.text.focus();
}

function cancelReply() {
  state.replyTo = null;
  if (ui.replyBar) ui.replyBar.hidden = true;
}

function onFileChosen() {
  const file = ui.file.files[0];
  ui.file.value = "";
  if (!file) return;
  const image = file.type.startsWith("image/");
  state.attachment = { file, preview: image ? URL.createObjectURL(file) : null };
  ui.attachmentBar.hidden = false;
  clear(
    ui.attachmentBar,
    image ? h("img", { src: state.attachment.preview, alt: `Preview of ${file.name}`, class: "preview-image" }) : null,
    h("span", { class: "attachment-name" }, `${file.name} (${bytes(file.size)})`),
    h("button", { type: "button", class: "send-attachment", onclick: sendAttachment }, "Send file"),
    h("button", { type: "button", class: "link", "aria-label": "Remove attachment", onclick: clearAttachment }, "×"),
    h("span", { class: "attachment-error", role: "alert" }),
  );
}

function clearAttachment() {
  state.attachment = null;
  if (ui.attachmentBar) {
    ui.attachmentBar.hidden = true;
    clear(ui.attachmentBar);
  }
}

async function sendAttachment() {
  const chosen = state.attachment;
  if (!chosen) return;
  const button = ui.attachmentBar.querySelector(".send-attachment");
  const problem = ui.attachmentBar.querySelector(".attachment-error");
  button.disabled = true;
  problem.textContent = "Uploading…";
  try {
    const attachment = await api.upload(chosen.file);
    const format = attachment.mime?.startsWith("image/") ? "image" : "file";
    clearAttachment();
    send({ format, content: "", attachment, localPreview: chosen.preview });
  } catch (e) {
    button.disabled = false;
    problem.textContent =
      e.code === "PAYLOAD_TOO_LARGE" ? `Too large: ${e.message}` : `${e.code}: ${e.message}`;
  }
}

function onSend(event) {
  event.preventDefault();
  const content = ui.text.value.trim();
  if (!content) return;
  ui.text.value = "";
  send({ format: "text", content });
}

function send({ format, content, attachment = null, localPreview = null }) {
  const conversation = state.conversations.get(state.openId);
  if (!conversation) return;
  const message = {
    conversationId: conversation.id,
    conversationType: conversation.type,
    senderId: state.me,
    clientMsgId: `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
    format,
    content,
    attachment,
    replyTo: state.replyTo?.id ?? null,
    status: "sending",
    createdAt: Date.now(),
    localPreview,
  };
  chatOf(conversation.id).pending.set(message.clientMsgId, message);
  cancelReply();
  publishMessage(message);
  renderMessages({ stick: true });
}

// Sends (or re-sends: the broker stores a clientMsgId once) a pending message; while offline it
// waits for the next connect.
function publishMessage(message) {
  const conversation = state.conversations.get(message.conversationId);
  const body = {
    clientMsgId: message.clientMsgId,
    format: message.format,
    content: message.content,
    ...(message.attachment ? { attachment: message.attachment } : {}),
    ...(message.replyTo ? { replyTo: message.replyTo } : {}),
  };
  if (conversation.type === "private") {
    return session.publish("/app/private.send", { to: conversation.peerId, ...body });
  }
  return session.publish("/app/group.send", { conversationId: conversation.id, ...body });
}

function flushPending() {
  for (const chat of state.chats.values()) {
    for (const message of chat.pending.values()) if (!message.failed) publishMessage(message);
  }
}

function retry(message) {
  message.failed = null;
  publishMessage(message);
  renderMessages();
}

function discard(message) {
  chatOf(message.conversationId).pending.delete(message.clientMsgId);
  renderMessages();
}

function recall(message) {
  if (!session.publish("/app/message.recall", { messageId: message.id })) showError(new Error("offline: try again when connected"));
}

// ---------------------------------------------------------------------------------------------
// Dialogs: new chat, new group, forward
// ---------------------------------------------------------------------------------------------

function dialog(title, fields, submitLabel, onSubmit) {
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      method: "dialog",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await onSubmit(form);
          ui.dialog.close();
        } catch (e) {
          problem.textContent = e.code ? `${e.code}: ${e.message}` : e.message;
        }
      },
    },
    h("h2", {}, title),
    fields,
    problem,
    h(
      "div",
      { class: "row end" },
      h("button", { type: "button", class: "link", onclick: () => ui.dialog.close() }, "Cancel"),
      h("button", { type: "submit" }, submitLabel),
    ),
  );
  clear(ui.dialog, form);
  ui.dialog.showModal();
  form.querySelector("input, select, textarea")?.focus();
}

function ids(text) {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function newChatDialog() {
  dialog(
    "New chat",
    [h("label", { for: "peer-id" }, "User id"), h("input", { id: "peer-id", name: "peer", required: true, autocomplete: "off" })],
    "Start chat",
    async (form) => {
      const conversation = await api.privateConversation(form.elements.peer.value.trim());
      upsertConversation(conversation);
      await loadPresence();
      openConversation(conversation.id);
    },
  );
}

function newGroupDialog() {
  dialog(
    "New group",
    [
      h("label", { for: "group-name" }, "Name"),
      h("input", { id: "group-name", name: "name", required: true }),
      h("label", { for: "group-members" }, "Members (user ids, comma separated)"),
      h("input", { id: "group-members", name: "members", autocomplete: "off" }),
    ],
    "Create group",
    async (form) => {
      const conversation = await api.createGroup(form.elements.name.value.trim(), ids(form.elements.members.value));
      upsertConversation(conversation);
      openConversation(conversation.id);
    },
  );
}

function forwardDialog(message) {
  const choices = sortedConversations()
    .filter((c) => c.type !== "system" && c.status !== "dissolved")
    .map((c) => h("label", { class: "choice" }, h("input", { type: "checkbox", name: "to", value: c.id }), " ", titleOf(c)));
  dialog("Forward to", [h("fieldset", {}, h("legend", { class: "sr-only" }, "Conversations"), choices)], "Forward", async (form) => {
    const to = [...form.querySelectorAll('input[name="to"]:checked')].map((input) => input.value);
    if (to.length === 0) throw new Error("Pick at least one conversation");
    await api.forward([message.id], to);
  });
}

// ---------------------------------------------------------------------------------------------
// Side panel: group management, notifications
// ---------------------------------------------------------------------------------------------

function togglePanel(kind) {
  state.panel = state.panel === kind ? null : kind;
  if (kind === "notifications") state.unseenNotifications = 0;
  renderPanel();
  renderList();
}

function renderPanel() {
  if (!ui.panel) return;
  if (state.panel === "notifications") return renderNotifications();
  if (state.panel === "group" && state.groups.get(state.openId)) return renderGroupPanel(state.groups.get(state.openId));
  ui.panel.hidden = true;
  clear(ui.panel);
}

function panelHead(title) {
  return h("header", { class: "panel-head" }, h("h2", {}, title), h("button", { type: "button", class: "link", "aria-label": "Close panel", onclick: () => togglePanel(state.panel) }, "×"));
}

function renderNotifications() {
  ui.panel.hidden = false;
  const system = [...state.conversations.values()].find((c) => c.type === "system");
  clear(
    ui.panel,
    panelHead("Notifications"),
    state.notifications.length === 0 ? h("p", { class: "hint" }, "No new notifications in this session.") : null,
    h(
      "ul",
      { class: "notifications" },
      state.notifications.map((n) => {
        const title = n.attachment?.title ?? n.content.split("\n")[0];
        const text = n.attachment?.summary ?? n.content.split("\n").slice(1).join("\n");
        return h("li", {}, h("strong", {}, title), h("p", {}, text), h("time", {}, time(n.createdAt)));
      }),
    ),
    system ? h("button", { type: "button", onclick: () => openConversation(system.id) }, "All notifications") : null,
  );
}

function renderGroupPanel(group) {
  ui.panel.hidden = false;
  const role = myRole(group.id);
  const manager = role === "owner" || role === "admin";
  const act = (fn) => async () => {
    try {
      await fn();
      await refreshGroup(group.id);
    } catch (e) {
      showError(e);
    }
  };
  const members = (group.members ?? []).map((m) =>
    h(
      "li",
      { class: "member", dataset: { userId: m.userId } },
      h("span", {}, m.userId, " ", h("small", { class: "role" }, m.role)),
      role === "owner" && m.userId !== state.me
        ? h(
            "select",
            {
              "aria-label": `Role of ${m.userId}`,
              onchange: (event) => act(() => api.setRole(group.id, m.userId, event.target.value))(),
            },
            ["member", "admin", "owner"].map((r) => h("option", { value: r, selected: r === m.role }, r)),
          )
        : null,
      m.userId !== state.me && (role === "owner" || (role === "admin" && m.role === "member"))
        ? h("button", { type: "button", class: "link", "aria-label": `Remove ${m.userId}`, onclick: act(() => api.removeMember(group.id, m.userId)) }, "Remove")
        : null,
    ),
  );
  const inviteInput = h("input", { id: "invite", placeholder: "user ids", autocomplete: "off" });
  const announcementInput = h("textarea", { id: "announcement", rows: 2 }, group.announcement ?? "");
  clear(
    ui.panel,
    panelHead(group.name || "Group"),
    h("p", { class: "hint" }, `${group.memberCount} members · you are ${role ?? "a member"}`),
    manager
      ? h(
          "form",
          {
            class: "stack",
            onsubmit: (event) => {
              event.preventDefault();
              act(() => api.updateGroup(group.id, { announcement: announcementInput.value }))();
            },
          },
          h("label", { for: "announcement" }, "Announcement"),
          announcementInput,
          h("button", { type: "submit" }, "Post announcement"),
        )
      : group.announcement
        ? h("p", { class: "announcement" }, group.announcement)
        : null,
    h("h3", {}, "Members"),
    h("ul", { class: "members" }, members),
    manager || group.allowInvite
      ? h(
          "form",
          {
            class: "stack",
            onsubmit: (event) => {
              event.preventDefault();
              act(() => api.invite(group.id, ids(inviteInput.value)))().then(() => (inviteInput.value = ""));
            },
          },
          h("label", { for: "invite" }, "Invite"),
          inviteInput,
          h("button", { type: "submit" }, "Invite"),
        )
      : null,
    h(
      "div",
      { class: "row" },
      role !== "owner" ? h("button", { type: "button", class: "danger", onclick: act(() => api.exitGroup(group.id)) }, "Leave group") : null,
      role === "owner" && group.status !== "dissolved"
        ? h("button", { type: "button", class: "danger", onclick: act(() => api.dissolveGroup(group.id)) }, "Dissolve group")
        : null,
    ),
  );
}

// ---------------------------------------------------------------------------------------------

document.addEventListener("visibilitychange", () => {
  if (session) markRead();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showSignIn();
