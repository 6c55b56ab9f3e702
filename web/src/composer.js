// The composer: text, reply, attachments and typing notices; sending keeps a pending copy until
// the broker's echo replaces it, and re-sends it (the broker stores a clientMsgId once) after a
// reconnect.
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

export function startReply(message) {
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

export function recall(message) {
  if (!session.publish("/app/message.recall", { messageId: message.id })) showError(new Error("offline: try again when connected"));
}
