// The conversation list in the sidebar and the message search under it.
import { previewOf, sortedConversations, state, titleOf } from "./state.js";
import { clear, h, highlight, time } from "./dom.js";
import { api, ui } from "./context.js";
import { openConversation } from "./chat.js";

export function renderList() {
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
            c.mentioned ? h("span", { class: "mention-badge", "aria-label": "you were mentioned", title: "You were mentioned" }, "@") : null,
            c.unreadCount > 0 ? h("span", { class: `badge${c.muted ? " muted" : ""}`, "aria-label": `${c.unreadCount} unread` }, String(c.unreadCount)) : null,
          ),
        ),
      ),
    );
  });
  clear(ui.list, items.length ? items : h("li", { class: "empty" }, "No conversations yet. Start one with New chat."));
  ui.notifyButton.textContent = state.unseenNotifications ? `Notifications (${state.unseenNotifications})` : "Notifications";
  if (ui.contactsButton) ui.contactsButton.textContent = state.unseenContactRequests ? `Contacts (${state.unseenContactRequests})` : "Contacts";
}

export async function onSearch(event) {
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
