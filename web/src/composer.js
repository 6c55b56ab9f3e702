// The composer: text, reply, edit, attachments, @mentions and typing notices; sending keeps a
// pending copy until the broker's echo replaces it, and re-sends it (the broker stores a
// clientMsgId once) after a reconnect. Also the other changes to a stored message: recall,
// reactions and pins.
import { chatOf, previewOf, state } from "./state.js";
import { bytes, clear, h } from "./dom.js";
import { api, session, showError, ui } from "./context.js";
import { renderMessages } from "./messages.js";

const TYPING_SEND_EVERY_MS = 2_000;

let lastTypingSent = 0;

export function buildComposer(conversation) {
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
      } else if (event.key === "Escape" && state.editing) {
        cancelEdit();
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
  ui.editBar = h("div", { class: "edit-bar", hidden: true });
  ui.attachmentBar = h("div", { class: "attachment-bar", hidden: true });
  ui.form = h(
    "form",
    { class: "composer-row", onsubmit: onSend },
    h("label", { for: "attach", class: "attach", title: "Attach an image or file" }, "+", h("span", { class: "sr-only" }, "Attach a file"), ui.file),
    h("label", { for: "message-text", class: "sr-only" }, "Message"),
    ui.text,
    h("button", { type: "submit", class: "send" }, "Send"),
  );
  return h("div", { class: "composer" }, ui.replyBar, ui.editBar, ui.attachmentBar, ui.form);
}

export function startReply(message) {
  cancelEdit();
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

// Puts the text of a message of mine in the composer; the next send replaces it.
export function startEdit(message) {
  cancelReply();
  state.editing = message;
  ui.editBar.hidden = false;
  clear(
    ui.editBar,
    h("span", {}, `Editing: ${message.content.slice(0, 80)}`),
    h("button", { type: "button", class: "link", "aria-label": "Cancel edit", onclick: cancelEdit }, "×"),
  );
  ui.text.value = message.content;
  ui.text.focus();
}

function cancelEdit() {
  if (!state.editing) return;
  state.editing = null;
  if (ui.editBar) ui.editBar.hidden = true;
  if (ui.text) ui.text.value = "";
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
  const editing = state.editing;
  if (editing) {
    cancelEdit();
    if (content !== editing.content) publishOrComplain("/app/message.edit", { messageId: editing.id, content });
    return;
  }
  ui.text.value = "";
  send({ format: "text", content, ...mentionsIn(content) });
}

// The members of the open group named as `@userId` in the text (`@all`: everybody, which only
// the owner and admins may mention). Only members known to the page count: the broker refuses a
// mention of anyone else.
function mentionsIn(content) {
  const group = state.groups.get(state.openId);
  if (state.conversations.get(state.openId)?.type !== "group" || !group) return {};
  const members = new Set((group.members ?? []).map((m) => m.userId));
  const role = group.members?.find((m) => m.userId === state.me)?.role;
  const mentions = new Set();
  let mentionAll = false;
  for (const word of content.split(/\s+/)) {
    if (!word.startsWith("@")) continue;
    const name = word.slice(1);
    const trimmed = name.replace(/[.,:;!?)]+$/, "");
    if (trimmed === "all" && (role === "owner" || role === "admin")) mentionAll = true;
    else if (members.has(name) && name !== state.me) mentions.add(name);
    else if (members.has(trimmed) && trimmed !== state.me) mentions.add(trimmed);
  }
  if (mentionAll) return { mentionAll: true };
  return mentions.size ? { mentions: [...mentions] } : {};
}

function send({ format, content, attachment = null, localPreview = null, mentions = null, mentionAll = false }) {
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
    mentions,
    mentionAll,
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
    ...(message.mentions?.length ? { mentions: message.mentions } : {}),
    ...(message.mentionAll ? { mentionAll: true } : {}),
  };
  if (conversation.type === "private") {
    return session.publish("/app/private.send", { to: conversation.peerId, ...body });
  }
  return session.publish("/app/group.send", { conversationId: conversation.id, ...body });
}

export function flushPending() {
  for (const chat of state.chats.values()) {
    for (const message of chat.pending.values()) if (!message.failed) publishMessage(message);
  }
}

export function retry(message) {
  message.failed = null;
  publishMessage(message);
  renderMessages();
}

export function discard(message) {
  chatOf(message.conversationId).pending.delete(message.clientMsgId);
  renderMessages();
}

// Changes to a stored message: the broker answers with a push to everyone who has it (or an
// error on /user/queue/errors).
function publishOrComplain(destination, body) {
  if (!session.publish(destination, body)) showError(new Error("offline: try again when connected"));
}

export function recall(message) {
  publishOrComplain("/app/message.recall", { messageId: message.id });
}

export function react(message, emoji, on) {
  publishOrComplain("/app/message.react", { messageId: message.id, emoji, on });
}

export function pin(message, on) {
  publishOrComplain("/app/message.pin", { messageId: message.id, on });
}
