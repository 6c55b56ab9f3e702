// Events pushed by the broker (message, edit, reaction, pin, receipt, typing, presence and group
// events, app errors), each merged into the state and the affected views re-rendered. Messages a
// resumed subscription replays (`replay:true`) are taken like live ones: the state keys them by
// conversation and seq. Those on the private chats' queue also move the inbox position on.
import { chatOf, mentionsMe, notePosition, putMessage, state } from "./state.js";
import { showError } from "./context.js";
import { catchUp, fetchConversation, forgetConversation, privateCatchUp, recount, upsertConversation } from "./sync.js";
import { renderList } from "./list.js";
import { markRead, refreshChat, refreshGroup, renderChatHeader, renderPinned } from "./chat.js";
import { renderMessages } from "./messages.js";
import { renderPanel } from "./panel.js";

const TYPING_SHOWN_MS = 4_000;

export function onEvent(event, body, source, headers = {}) {
  switch (event) {
    case "message.new":
      onMessage(body);
      // Only once the message is in: a reconnect resumes after the position.
      if (source === "messages") notePosition(headers.position);
      return undefined;
    case "notification.new":
      state.notifications.unshift(body);
      if (state.panel !== "notifications") state.unseenNotifications += 1;
      onMessage(body);
      return renderPanel();
    case "replay.truncated":
      return onTruncated(body, source);
    case "message.recalled":
      return onRecalled(body);
    case "message.edited":
      return onEdited(body);
    case "message.reactions":
      return onReactions(body);
    case "message.delivered":
      return setStatus(body.conversationId, (m) => m.seq === body.seq || m.id === body.messageId, "delivered");
    case "message.read":
      if (body.readerId === state.me) return;
      return setStatus(body.conversationId, (m) => m.senderId === state.me && m.seq <= body.upToSeq, "read");
    case "conversation.updated":
      return onConversationUpdated(body);
    case "message.read_count":
      return onReadCounts(body);
    case "contact.request":
      if (state.panel !== "contacts" && body.toUserId === state.me) state.unseenContactRequests += 1;
      renderList();
      return renderPanel();
    case "contact.accepted":
    case "contact.removed":
      return renderPanel();
    case "typing":
      return onTyping(body);
    case "presence":
      state.presence.set(body.userId, body);
      renderList();
      return renderChatHeader();
    case "member.added":
    case "member.removed":
    case "member.role":
    case "member.muted":
    case "member.unmuted":
    case "member.updated":
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
  const conversation = takeMessage(message);
  if (conversation) showConversation(conversation);
}

// Merges a message into the state; returns its conversation, null while the page does not know it.
function takeMessage(message) {
  putMessage(message);
  const id = message.conversationId;
  if (state.typing.get(id)?.userId === message.senderId) state.typing.delete(id);
  const conversation = state.conversations.get(id);
  if (!conversation) {
    fetchConversation(id);
    return null;
  }
  if (message.senderId === state.me) conversation.seenSeq = Math.max(conversation.seenSeq ?? 0, message.seq);
  // A hidden conversation comes back with its next message.
  conversation.hidden = false;
  // Until it is read (recount drops it when nothing is unread).
  if (mentionsMe(message)) conversation.mentioned = true;
  return conversation;
}

function showConversation(conversation) {
  recount(conversation);
  renderList();
  if (state.openId === conversation.id) {
    renderMessages({ stick: true });
    renderChatHeader();
    markRead();
  }
}

// More was missed than the broker replays: the seqs before the replayed ones (all after afterSeq
// when beforeSeq is null) come over REST, merged like pushes and drawn once. Without a
// conversation (only on the private chats' queue) nothing could be replayed: every loaded private
// chat catches up over REST.
function onTruncated(body, source) {
  const paging = body.conversationId == null ? privateCatchUp() : catchUp(body.conversationId, body.afterSeq, body.beforeSeq);
  paging.then((missed) => {
    const conversations = new Set();
    for (const message of missed) conversations.add(takeMessage(message));
    conversations.delete(null);
    if (source === "notifications") {
      state.notifications.push(...missed);
      state.notifications.sort((a, b) => b.seq - a.seq);
      if (state.panel !== "notifications") state.unseenNotifications += missed.length;
      renderPanel();
    }
    for (const conversation of conversations) showConversation(conversation);
  }, showError);
}

function onRecalled(body) {
  const chat = chatOf(body.conversationId);
  const message = chat.bySeq.get(body.seq);
  if (message) {
    message.status = "recalled";
    message.content = "";
    message.attachment = null;
  }
  changeMessage(body, { status: "recalled", content: "" });
}

function onEdited(body) {
  const message = chatOf(body.conversationId).bySeq.get(body.seq);
  if (message) Object.assign(message, { content: body.content, editedAt: body.editedAt });
  changeMessage(body, { content: body.content, editedAt: body.editedAt });
}

// The same change to the copies of a message in the conversation list and the pinned bar.
function changeMessage(body, change) {
  const conversation = state.conversations.get(body.conversationId);
  if (conversation?.lastMessage?.id === body.messageId) {
    conversation.lastMessage = { ...conversation.lastMessage, ...change };
  }
  const pins = state.pins.get(body.conversationId);
  for (const p of pins ?? []) if (p.message.id === body.messageId) p.message = { ...p.message, ...change };
  renderList();
  if (state.openId === body.conversationId) {
    renderPinned();
    renderMessages();
  }
}

// The counts are complete; whether I reacted comes from what I knew and my own changes.
function onReactions(body) {
  const message = chatOf(body.conversationId).bySeq.get(body.seq);
  if (!message) return;
  const mine = new Map((message.reactions ?? []).map((r) => [r.emoji, Boolean(r.me)]));
  for (const change of body.changes ?? []) if (change.userId === state.me) mine.set(change.emoji, change.on);
  message.reactions = (body.reactions ?? []).map((r) => ({ ...r, me: mine.get(r.emoji) ?? false }));
  if (state.openId === body.conversationId) renderMessages();
}

function onPins(body) {
  state.pins.set(body.conversationId, body.pins);
  if (state.openId === body.conversationId) {
    renderPinned();
    renderMessages();
  }
}

// Counts only grow (positions only move forward), so an older event never lowers one.
function onReadCounts(body) {
  const chat = chatOf(body.conversationId);
  for (const { seq, readCount } of body.counts ?? []) {
    const message = chat.bySeq.get(seq);
    if (message) message.readCount = Math.max(message.readCount ?? 0, readCount);
  }
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
  if (Array.isArray(body.pins)) return onPins(body);
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
