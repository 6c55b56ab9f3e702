// What the page knows: conversations, the messages loaded per conversation (by seq, plus the
// ones still being sent, by clientMsgId), presence, typing and notifications. Messages are keyed
// by seq so that a push, a history page and a re-sync after a reconnect never show one twice.

export const state = {
  me: null,
  conversations: new Map(),
  chats: new Map(),
  presence: new Map(),
  typing: new Map(),
  groups: new Map(),
  // The pinned messages of each conversation whose pins were loaded: [{message, pinnedBy, pinnedAt}].
  pins: new Map(),
  notifications: [],
  unseenNotifications: 0,
  // Announcements to everyone, newest first: the recent ones from the broker, then live ones.
  announcements: [],
  // Contact requests that arrived while the contacts panel was closed.
  unseenContactRequests: 0,
  openId: null,
  panel: null,
  replyTo: null,
  // The message of mine whose text the composer is replacing.
  editing: null,
  attachment: null,
  showArchived: false,
  search: null,
  status: "connecting",
  // Whether the conversation list has loaded since sign-in (the notifications resume from then).
  listed: false,
  // The highest inbox position seen on /user/queue/messages (the `position` header of private and
  // assistant messages, live or replayed): the private chats resume from it after a reconnect.
  // Null until the first such message, when they catch up over REST instead.
  position: null,
};

export function chatOf(id) {
  let chat = state.chats.get(id);
  if (!chat) {
    chat = { bySeq: new Map(), pending: new Map(), hasMore: true, loaded: false, loading: false };
    state.chats.set(id, chat);
  }
  return chat;
}

// Stores a message from the broker; true when it was not known yet.
export function putMessage(message) {
  const chat = chatOf(message.conversationId);
  if (message.senderId === state.me) chat.pending.delete(message.clientMsgId);
  const known = chat.bySeq.get(message.seq);
  chat.bySeq.set(message.seq, known ? { ...known, ...message, status: betterStatus(known.status, message.status) } : message);
  return !known;
}

// Takes the `position` header of a message pushed on /user/queue/messages; only the highest counts
// (the broker replays everything above the one a resume names). Anything but a decimal integer
// (at most 15 digits, so a safe one) is left out: a bad since-position would close the connection.
export function notePosition(header) {
  if (typeof header !== "string" || !/^\d{1,15}$/.test(header)) return;
  state.position = Math.max(state.position ?? 0, Number(header));
}

// Statuses only move forward, whatever order the pushes and history answers arrive in.
const RANK = { sent: 0, delivered: 1, read: 2, recalled: 3 };
export function betterStatus(a, b) {
  return (RANK[b] ?? 0) >= (RANK[a] ?? 0) ? b : a;
}

// Whether a message of someone else mentions me (by name, or everybody).
export function mentionsMe(message) {
  return message.senderId !== state.me && (message.mentionAll === true || (message.mentions ?? []).includes(state.me));
}

export function messagesOf(id) {
  const chat = chatOf(id);
  const stored = [...chat.bySeq.values()].sort((a, b) => a.seq - b.seq);
  const pending = [...chat.pending.values()].sort((a, b) => a.createdAt - b.createdAt);
  return stored.concat(pending);
}

export function lastSeqOf(id) {
  let last = 0;
  for (const seq of chatOf(id).bySeq.keys()) last = Math.max(last, seq);
  return last;
}

export function findMessage(id) {
  for (const chat of state.chats.values()) {
    for (const message of chat.bySeq.values()) if (message.id === id) return message;
  }
  return null;
}

export function sortedConversations() {
  const activity = (c) => c.lastMessage?.createdAt ?? 0;
  return [...state.conversations.values()]
    .filter((c) => !c.removed && !c.hidden && (state.showArchived || !c.archived))
    .sort((a, b) => Number(b.pinned) - Number(a.pinned) || activity(b) - activity(a) || a.id.localeCompare(b.id));
}

export function titleOf(conversation) {
  if (!conversation) return "";
  switch (conversation.type) {
    case "private":
      return conversation.peerId ?? conversation.name ?? conversation.id;
    case "system":
      return "System notifications";
    case "assistant":
      return "Assistant";
    default:
      return conversation.name || "Group";
  }
}

export function previewOf(message) {
  if (!message) return "";
  if (message.status === "recalled") return "Message recalled";
  switch (message.format) {
    case "image":
      return "[image]";
    case "file":
      return `[file] ${message.attachment?.name ?? ""}`;
    case "card":
      return `[card] ${message.attachment?.title ?? ""}`;
    case "voice":
    case "video":
      return `[${message.format}]`;
    default:
      return message.content;
  }
}
