// Modal dialogs: new chat, new group, forward.
import { sortedConversations, titleOf } from "./state.js";
import { clear, h } from "./dom.js";
import { api, ui } from "./context.js";
import { loadPresence, upsertConversation } from "./sync.js";
import { openConversation } from "./chat.js";

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

export function ids(text) {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export function newChatDialog() {
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

export function newGroupDialog() {
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

export function forwardDialog(message) {
  const choices = sortedConversations()
    .filter((c) => c.type !== "system" && c.status !== "dissolved")
    .map((c) => h("label", { class: "choice" }, h("input", { type: "checkbox", name: "to", value: c.id }), " ", titleOf(c)));
  dialog("Forward to", [h("fieldset", {}, h("legend", { class: "sr-only" }, "Conversations"), choices)], "Forward", async (form) => {
    const to = [...form.querySelectorAll('input[name="to"]:checked')].map((input) => input.value);
    if (to.length === 0) throw new Error("Pick at least one conversation");
    await api.forward([message.id], to);
  });
}
