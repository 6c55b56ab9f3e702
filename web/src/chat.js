// The open chat: opening a conversation (loading its history and group view), its header with
// presence, typing and the pin/mute/archive toggles, the bar of pinned messages, read positions,
// and paging back on scroll.
import { chatOf, lastSeqOf, previewOf, state, titleOf } from "./state.js";
import { clear, h, time } from "./dom.js";
import { api, session, showError, ui } from "./context.js";
import { forgetConversation, loadHistory, loadOlder, loadPins, upsertConversation } from "./sync.js";
import { renderList } from "./list.js";
import { renderMessages } from "./messages.js";
import { buildComposer, pin } from "./composer.js";
import { renderPanel, togglePanel } from "./panel.js";

export async function openConversation(id, seq) {
  state.openId = id;
  state.replyTo = null;
  state.editing = null;
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
    await loadPins(id);
  } catch (e) {
    showError(e);
  }
  if (state.openId !== id) return;
  refreshChat();
  if (seq) ui.messages?.querySelector(`[data-seq="${seq}"]`)?.scrollIntoView({ block: "center" });
  markRead();
  ui.text?.focus();
}

export async function refreshGroup(id) {
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

export function myRole(id) {
  return state.groups.get(id)?.members?.find((m) => m.userId === state.me)?.role;
}

// Either user of a private chat pins messages; in a group, the owner and admins.
export function canPin(conversation) {
  if (conversation?.type === "private") return true;
  const role = conversation?.type === "group" ? myRole(conversation.id) : null;
  return role === "owner" || role === "admin";
}

export function markRead() {
  const id = state.openId;
  const conversation = state.conversations.get(id);
  if (!conversation || document.visibilityState !== "visible") return;
  if (conversation.mentioned) {
    conversation.mentioned = false;
    renderList();
  }
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
export function refreshChat() {
  const conversation = state.conversations.get(state.openId);
  if (ui.chatFor && ui.chatFor === state.openId && ui.chatStatus === conversation?.status) {
    renderChatHeader();
    renderPinned();
    renderMessages();
  } else {
    renderChat();
  }
}

export function renderChat() {
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
  ui.pinned = h("div", { class: "pinned-bar", role: "region", "aria-label": "Pinned messages" });
  ui.messages = h("div", { class: "messages", role: "log", "aria-label": "Messages", tabindex: "0", onscroll: onMessagesScroll });
  ui.errors = h("div", { class: "errors", role: "alert" });
  ui.composer = buildComposer(conversation);
  clear(ui.chat, ui.header, ui.announcement, ui.pinned, ui.messages, ui.errors, ui.composer);
  renderChatHeader();
  renderPinned();
  renderMessages({ stick: true });
}

export function renderChatHeader() {
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
      h("button", { type: "button", title: "Leave the list until the next message", onclick: () => hide(conversation) }, "Hide"),
      h("button", { type: "button", title: "Clear the history for me", onclick: () => clearHistory(conversation) }, "Clear"),
      conversation.type === "group" ? h("button", { type: "button", onclick: () => togglePanel("group") }, "Group") : null,
    ),
  );
  const announcement = conversation.announcement || state.groups.get(conversation.id)?.announcement;
  ui.announcement.hidden = !announcement;
  clear(ui.announcement, announcement ? [h("strong", {}, "Announcement: "), announcement] : []);
}

// The pinned messages of the open chat, the most recently pinned first; those who may pin may
// unpin from here.
export function renderPinned() {
  const conversation = state.conversations.get(state.openId);
  if (!conversation || !ui.pinned) return;
  const pins = state.pins.get(conversation.id) ?? [];
  const unpin = canPin(conversation);
  ui.pinned.hidden = pins.length === 0;
  clear(
    ui.pinned,
    h(
      "ul",
      {},
      pins.map((p) => {
        const text = `${p.message.senderId}: ${previewOf(p.message)}`;
        return h(
          "li",
          { class: "pinned-item", dataset: { messageId: p.message.id }, title: `Pinned by ${p.pinnedBy} ${time(p.pinnedAt)}` },
          h("span", { "aria-hidden": "true" }, "📌 "),
          h("span", { class: "pinned-text" }, text),
          unpin ? h("button", { type: "button", class: "link", "aria-label": `Unpin ${text}`, onclick: () => pin(p.message, false) }, "Unpin") : null,
        );
      }),
    ),
  );
}

async function hide(conversation) {
  try {
    upsertConversation(await api.settings(conversation.id, { hidden: true }));
  } catch (e) {
    return showError(e);
  }
  openConversation(null);
  renderList();
}

async function clearHistory(conversation) {
  if (!window.confirm("Clear this chat's history for you? The others keep theirs.")) return;
  try {
    upsertConversation(await api.clearHistory(conversation.id));
  } catch (e) {
    return showError(e);
  }
  renderList();
  renderMessages({ stick: true });
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
