// Loading and merging what the broker knows: the conversation list, presence and history pages.
// Pushes and answers race, so every merge only moves positions forward. After each reconnect
// groups and notifications catch up on their subscriptions (resumed from resumeFrom's seq), and
// so do the private chats once the page has seen an inbox position (resumed from it); resync()
// catches up the other loaded conversations over REST by seq.
import { chatOf, lastSeqOf, putMessage, state } from "./state.js";
import { api, session, showError } from "./context.js";
import { renderList } from "./list.js";
import { markRead, openConversation, refreshChat, renderChatHeader } from "./chat.js";
import { flushPending } from "./composer.js";

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
  state.listed = true;
}

const GROUP_TOPIC = "/topic/group.";
const NOTIFICATIONS = "/user/queue/notifications";
const MESSAGES = "/user/queue/messages";
// The conversations whose messages come on MESSAGES.
const QUEUED = new Set(["private", "assistant"]);

// Where a subscription to `destination` resumes from, where the broker resumes. The private chats'
// queue: the highest inbox position seen (its since-position). A group's topic, the notifications
// (i.e. the user's system conversation): the since-seq, for a loaded chat the last seq it holds,
// for another the last seq its list entry names (for the notifications 0 when the loaded list has
// no entry yet). Undefined elsewhere, or while the page knows no position: then the subscription
// is live only (and the private chats catch up over REST).
export function resumeFrom(destination) {
  if (destination === MESSAGES) return state.position ?? undefined;
  const notifications = destination === NOTIFICATIONS;
  if (!notifications && !destination.startsWith(GROUP_TOPIC)) return undefined;
  const id = notifications ? `system_${state.me}` : destination.slice(GROUP_TOPIC.length);
  if (chatOf(id).loaded) return lastSeqOf(id);
  const listed = state.conversations.get(id)?.lastSeq ?? (notifications && state.listed ? 0 : undefined);
  return listed === undefined ? undefined : Math.max(listed, lastSeqOf(id));
}

// Whether a conversation's subscription resumed on this connection (no REST catch-up then).
function resumed(id) {
  const type = state.conversations.get(id)?.type;
  if (type === "group") return session.resumes(GROUP_TOPIC + id);
  if (QUEUED.has(type)) return session.resumes(MESSAGES);
  return type === "system" && session.resumes(NOTIFICATIONS);
}

// Merges a list entry from the broker. Pushes and answers race, so positions only move forward:
// the newest message and last seq by seq, and the read position (`seenSeq`: last seq minus the
// broker's unread count, which also covers messages from before the user joined) by maximum.
// The unread count is then derived, never counted up, so no order of events can skew it.
export function upsertConversation(conversation) {
  const known = state.conversations.get(conversation.id);
  const merged = { ...known, ...conversation };
  if (conversation.lastSeq !== undefined && conversation.unreadCount !== undefined) {
    merged.seenSeq = Math.max(known?.seenSeq ?? 0, conversation.lastSeq - conversation.unreadCount);
  }
  // Clearing the history (here or on another device) is the one move back: the cleared
  // messages leave this page too, and the broker's last message stands.
  const cleared = (conversation.clearedSeq ?? 0) > (known?.clearedSeq ?? 0);
  if (cleared) {
    const chat = chatOf(conversation.id);
    for (const seq of [...chat.bySeq.keys()]) if (seq <= conversation.clearedSeq) chat.bySeq.delete(seq);
  }
  if (known) {
    merged.lastSeq = Math.max(known.lastSeq ?? 0, conversation.lastSeq ?? 0);
    if (!cleared && (known.lastMessage?.seq ?? 0) > (conversation.lastMessage?.seq ?? 0)) merged.lastMessage = known.lastMessage;
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
export function fetchConversation(id) {
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
export function recount(conversation) {
  const chat = chatOf(conversation.id);
  const last = lastSeqOf(conversation.id);
  if (last > (conversation.lastSeq ?? 0)) conversation.lastSeq = last;
  if (last > 0 && last >= (conversation.lastMessage?.seq ?? 0)) conversation.lastMessage = chat.bySeq.get(last);
  if (state.openId === conversation.id && document.visibilityState === "visible") {
    // Reading it now: markRead moves the position on the broker.
    conversation.unreadCount = 0;
  } else {
    conversation.unreadCount = Math.max(0, (conversation.lastSeq ?? 0) - (conversation.seenSeq ?? 0));
  }
  // A mention counts while it is unread.
  if (conversation.unreadCount === 0) conversation.mentioned = false;
}

export function forgetConversation(id) {
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

// The re-sync of the current connection, for what must come after its list (privateCatchUp).
let syncing = Promise.resolve();

// After every (re)connect: the list again, then each loaded conversation that did not resume on
// its subscription from its last known seq, then whatever was typed while offline.
export function resync() {
  syncing = resyncNow();
  return syncing;
}

async function resyncNow() {
  await loadConversations();
  await loadPresence();
  for (const [id, chat] of state.chats) {
    if (chat.loaded && state.conversations.has(id) && !resumed(id)) await catchUp(id);
  }
  if (state.openId && !chatOf(state.openId).loaded) await loadHistory(state.openId);
  // Pins changed while offline are only told by the pins themselves.
  if (state.openId) await loadPins(state.openId);
  flushPending();
  renderList();
  refreshChat();
  markRead();
}

// When the broker could not resume the private chats (replay.truncated without a conversation:
// too many replays, its database, or positions turned off), they catch up over REST as before
// positions: each loaded one from the last seq it holds now (the truncation comes before any
// live message, so nothing live is skipped), once the list is in (a conversation gone meanwhile
// is not asked for). Returns the messages the page did not have.
export async function privateCatchUp() {
  const from = [];
  for (const [id, chat] of state.chats) {
    if (chat.loaded && QUEUED.has(state.conversations.get(id)?.type)) from.push([id, lastSeqOf(id)]);
  }
  await syncing.catch(() => {});
  const missed = [];
  for (const [id, after] of from) {
    if (state.conversations.has(id)) missed.push(...(await catchUp(id, after)));
  }
  return missed;
}

// Pages in the messages after seq `after`, up to `before` (to the end when null); returns the
// ones the page did not have.
export async function catchUp(id, after = lastSeqOf(id), before = null) {
  const missed = [];
  for (;;) {
    const page = await api.history(id, { afterSeq: after, beforeSeq: before ?? undefined, limit: 100 });
    for (const message of page.items) if (putMessage(message)) missed.push(message);
    if (page.items.length < 100) return missed;
    after = page.items[page.items.length - 1].seq;
  }
}

export async function loadPresence() {
  const peers = [...state.conversations.values()].filter((c) => c.type === "private" && c.peerId).map((c) => c.peerId);
  for (let i = 0; i < peers.length; i += 200) {
    for (const entry of await api.presence(peers.slice(i, i + 200))) state.presence.set(entry.userId, entry);
  }
}

// The pinned messages of a chat or group (other conversations have none).
export async function loadPins(id) {
  const type = state.conversations.get(id)?.type;
  if (type !== "private" && type !== "group") return;
  state.pins.set(id, (await api.pins(id)).items);
}

// The latest page; callers that arrive while it loads share the one request.
export function loadHistory(id) {
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

export async function loadOlder(id) {
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
