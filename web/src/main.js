// The demo chat client's entry: sign-in, the page's layout, and the STOMP session that keeps it
// current (resumed or re-synced after every reconnect). The views live in their own modules:
// list.js (conversations and search), chat.js (the open chat), messages.js (message rendering),
// composer.js (sending), dialogs.js, panel.js (group and notifications), events.js (pushes) and
// sync.js (loading and merging what the broker knows).
import "./style.css";
import { Api, claims, devLoginAvailable, devToken } from "./api.js";
import { Session } from "./session.js";
import { state } from "./state.js";
import { clear, h } from "./dom.js";
import { api, session, setApi, setSession, showError, ui } from "./context.js";
import { resumeFrom, resync } from "./sync.js";
import { onEvent } from "./events.js";
import { onSearch, renderList } from "./list.js";
import { markRead, renderChat } from "./chat.js";
import { newChatDialog, newGroupDialog } from "./dialogs.js";
import { renderPanel, togglePanel } from "./panel.js";

const TOKEN_KEY = "broker.token";

const app = document.getElementById("app");

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
  setApi(new Api(token));
  buildShell();
  setSession(new Session(token, {
    onStatus: (status) => {
      state.status = status;
      renderStatus();
    },
    onConnected: () => {
      resync().catch(showError);
      loadAnnouncements().catch(showError);
    },
    onEvent: onEvent,
    resumeFrom,
    onAnnouncement: (announcement) => {
      if (!state.announcements.some((a) => a.id === announcement.id)) state.announcements.unshift(announcement);
      if (state.panel !== "notifications") state.unseenNotifications += 1;
      renderList();
      renderPanel();
    },
    onUnauthorized: (reason) => signOut(`The broker refused the token: ${reason}`),
  }));
  session.start();
}

function signOut(problem) {
  sessionStorage.removeItem(TOKEN_KEY);
  session?.stop();
  for (const key of Object.keys(state)) {
    if (state[key] instanceof Map) state[key].clear();
  }
  state.notifications = [];
  state.announcements = [];
  state.openId = null;
  state.listed = false;
  // Another user's inbox positions mean nothing to the next one.
  state.position = null;
  showSignIn(problem);
}

// The recent announcements, with those unread counted among the unseen notifications.
async function loadAnnouncements() {
  const page = await api.announcements();
  const known = new Set(state.announcements.map((a) => a.id));
  for (const item of page.items.slice().reverse()) {
    if (!known.has(item.id)) state.announcements.unshift({ id: item.id, body: item.body, createdAt: item.createdAt });
  }
  state.announcements.sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : -1));
  if (state.panel !== "notifications") state.unseenNotifications = Math.max(state.unseenNotifications, page.unreadCount);
  renderList();
  renderPanel();
}

function buildShell() {
  ui.status = h("span", { class: "status", role: "status" });
  ui.list = h("ul", { class: "conversations", "aria-label": "Conversations" });
  ui.searchInput = h("input", { id: "search", type: "search", placeholder: "Search messages" });
  ui.searchResults = h("div", { class: "search-results", hidden: true, "aria-label": "Search results" });
  ui.notifyButton = h("button", { type: "button", onclick: () => togglePanel("notifications") }, "Notifications");
  ui.contactsButton = h("button", { type: "button", onclick: () => togglePanel("contacts") }, "Contacts");
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
        ui.contactsButton,
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

document.addEventListener("visibilitychange", () => {
  if (session) markRead();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showSignIn();
