// The side panel: a group's members and settings, and the notifications of this session.
import { state } from "./state.js";
import { clear, h, time } from "./dom.js";
import { api, showError, ui } from "./context.js";
import { renderList } from "./list.js";
import { myRole, openConversation, refreshGroup } from "./chat.js";
import { upsertConversation } from "./sync.js";
import { ids } from "./dialogs.js";

export function togglePanel(kind) {
  state.panel = state.panel === kind ? null : kind;
  if (kind === "notifications") {
    state.unseenNotifications = 0;
    const newest = state.announcements[0];
    if (newest) api.readAnnouncements(newest.id).catch(() => {});
  }
  if (kind === "contacts") state.unseenContactRequests = 0;
  renderPanel();
  renderList();
}

export function renderPanel() {
  if (!ui.panel) return;
  if (state.panel === "notifications") return renderNotifications();
  if (state.panel === "contacts") return renderContacts();
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
    state.announcements.length ? h("h3", {}, "Announcements") : null,
    h(
      "ul",
      { class: "notifications announcements" },
      state.announcements.map((a) => h("li", { dataset: { announcementId: a.id } }, h("p", {}, a.body), h("time", {}, time(a.createdAt)))),
    ),
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

// The contacts panel asks the broker each time it is drawn: contacts change rarely, and the
// answer carries their presence.
let contactsDrawn = 0;
async function renderContacts() {
  ui.panel.hidden = false;
  const drawing = ++contactsDrawn;
  let contacts, incoming, outgoing;
  try {
    [contacts, incoming, outgoing] = await Promise.all([api.contacts(), api.contactRequests("in"), api.contactRequests("out")]);
  } catch (e) {
    return showError(e);
  }
  if (drawing !== contactsDrawn || state.panel !== "contacts") return;
  const act = (fn) => async () => {
    try {
      await fn();
    } catch (e) {
      showError(e);
    }
    renderPanel();
  };
  const who = h("input", { id: "contact-user", placeholder: "user id", autocomplete: "off" });
  const note = h("input", { id: "contact-note", placeholder: "a short note", maxlength: "200" });
  clear(
    ui.panel,
    panelHead("Contacts"),
    h(
      "form",
      {
        class: "add-contact",
        onsubmit: (event) => {
          event.preventDefault();
          const userId = who.value.trim();
          if (userId) act(() => api.askContact(userId, note.value.trim()))();
        },
      },
      h("label", { for: "contact-user" }, "Add contact"),
      who,
      h("label", { for: "contact-note", class: "sr-only" }, "Note"),
      note,
      h("button", { type: "submit" }, "Send request"),
    ),
    incoming.items.length ? h("h3", {}, "Requests") : null,
    h(
      "ul",
      { class: "requests incoming" },
      incoming.items.map((r) =>
        h(
          "li",
          { class: "request", dataset: { userId: r.fromUserId } },
          h("strong", {}, r.fromUserId),
          r.note ? h("p", {}, r.note) : null,
          h("button", { type: "button", onclick: act(() => api.decideContact(r.id, "accept")) }, `Accept ${r.fromUserId}`),
          h("button", { type: "button", class: "link", onclick: act(() => api.decideContact(r.id, "decline")) }, "Decline"),
        ),
      ),
    ),
    outgoing.items.length ? h("h3", {}, "Waiting") : null,
    h(
      "ul",
      { class: "requests outgoing" },
      outgoing.items.map((r) =>
        h("li", { class: "request", dataset: { userId: r.toUserId } }, r.toUserId, " ", h("button", { type: "button", class: "link", onclick: act(() => api.decideContact(r.id, "cancel")) }, "Cancel")),
      ),
    ),
    h("h3", {}, "Contacts"),
    contacts.items.length === 0 ? h("p", { class: "hint" }, "No contacts yet.") : null,
    h(
      "ul",
      { class: "contacts" },
      contacts.items.map((c) =>
        h(
          "li",
          { class: "contact", dataset: { userId: c.userId } },
          h("span", { class: `dot${c.online ? " online" : ""}`, "aria-label": c.online ? "online" : "offline" }),
          h("button", { type: "button", class: "link", onclick: act(() => openChatWith(c.userId)) }, c.userId),
          h("button", { type: "button", class: "link", "aria-label": `Remove ${c.userId}`, onclick: act(() => api.removeContact(c.userId)) }, "Remove"),
        ),
      ),
    ),
  );
}

async function openChatWith(userId) {
  const conversation = await api.privateConversation(userId);
  upsertConversation(conversation);
  renderList();
  openConversation(conversation.id);
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
      h("span", {}, m.nickname ? `${m.nickname} (${m.userId})` : m.userId, " ", h("small", { class: "role" }, m.role), m.muted ? h("small", { class: "flag" }, " muted") : null),
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
      m.userId !== state.me && (role === "owner" || (role === "admin" && m.role === "member"))
        ? h(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `${m.muted ? "Unmute" : "Mute"} ${m.userId}`,
              onclick: act(() => (m.muted ? api.unmuteMember(group.id, m.userId) : api.muteMember(group.id, m.userId, null))),
            },
            m.muted ? "Unmute" : "Mute",
          )
        : null,
    ),
  );
  const mine = (group.members ?? []).find((m) => m.userId === state.me);
  // The panel is drawn again on every group event: what the user is typing survives it.
  const typed = ui.panel.dataset.groupId === group.id ? ui.panel.querySelector("#nickname")?.value : undefined;
  ui.panel.dataset.groupId = group.id;
  const nicknameInput = h("input", { id: "nickname", placeholder: "your name here", maxlength: "32", value: typed ?? mine?.nickname ?? "" });
  const rule = (label, key) =>
    h(
      "label",
      { class: "rule" },
      h("input", { type: "checkbox", checked: Boolean(group[key]), onchange: (event) => act(() => api.updateGroup(group.id, { [key]: event.target.checked }))() }),
      ` ${label}`,
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
    manager ? h("div", { class: "rules" }, rule("Only owner and admins may send", "allMuted"), rule("Members may leave", "allowMemberExit"), rule("New members see history", "enableMessageHistory")) : null,
    h("h3", {}, "Members"),
    h("ul", { class: "members" }, members),
    h(
      "form",
      {
        class: "stack",
        onsubmit: (event) => {
          event.preventDefault();
          act(() => api.setNickname(group.id, nicknameInput.value.trim() || null))();
        },
      },
      h("label", { for: "nickname" }, "My nickname here"),
      nicknameInput,
      h("button", { type: "submit" }, "Set nickname"),
    ),
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
