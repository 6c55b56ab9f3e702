// Rendering the messages of the open chat: text, images and files of this broker (fetched with
// the token), external attachments as plain links, replies, delivery ticks and message actions.
import { brokerFilePath } from "./api.js";
import { chatOf, findMessage, messagesOf, previewOf, state } from "./state.js";
import { bytes, clear, h, time } from "./dom.js";
import { api, showError, ui } from "./context.js";
import { myRole } from "./chat.js";
import { discard, recall, retry, startReply } from "./composer.js";
import { forwardDialog } from "./dialogs.js";

const RECALL_WINDOW_MS = 120_000;

export function renderMessages({ stick = false } = {}) {
  const id = state.openId;
  const box = ui.messages;
  if (!id || !box) return;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const top = box.scrollTop;
  const conversation = state.conversations.get(id);
  const chat = chatOf(id);
  const items = messagesOf(id).map((m) => renderMessage(m, conversation));
  clear(
    box,
    chat.hasMore && chat.loaded ? h("div", { class: "older" }, "Scroll up for older messages") : chat.loaded ? h("div", { class: "older" }, "Start of the conversation") : null,
    items,
  );
  if (stick || nearBottom) box.scrollTop = box.scrollHeight;
  else box.scrollTop = top;
}

function renderMessage(m, conversation) {
  const mine = m.senderId === state.me;
  const pending = !m.seq;
  const recalled = m.status === "recalled";
  const role = conversation.type === "group" ? myRole(conversation.id) : null;
  const canRecall = !pending && !recalled && ((mine && Date.now() - m.createdAt < RECALL_WINDOW_MS) || role === "owner" || role === "admin");
  const quoted = m.replyTo ? findMessage(m.replyTo) : null;
  const status = pending ? (m.failed ? "failed" : "sending") : m.status;
  return h(
    "article",
    {
      class: `msg ${mine ? "mine" : "theirs"}${recalled ? " recalled" : ""}${pending ? " pending" : ""}`,
      dataset: { seq: m.seq ?? "", clientMsgId: m.clientMsgId, status, id: m.id ?? "" },
      "aria-label": `${mine ? "You" : m.senderId}: ${previewOf(m)}`,
    },
    !mine && conversation.type !== "private" ? h("div", { class: "sender" }, m.senderId) : null,
    m.forwardedFrom ? h("div", { class: "forwarded" }, `Forwarded from ${m.forwardedFrom.senderId}`) : null,
    m.replyTo ? h("div", { class: "quote" }, quoted ? `${quoted.senderId}: ${previewOf(quoted)}` : "a message") : null,
    h("div", { class: "body" }, recalled ? h("em", {}, mine ? "You recalled a message" : "Message recalled") : renderBody(m)),
    h(
      "div",
      { class: "meta" },
      h("time", { datetime: new Date(m.createdAt).toISOString() }, time(m.createdAt)),
      mine && conversation.type === "private" ? h("span", { class: `ticks ${status}`, "aria-label": status }, ticks(status)) : null,
      mine && conversation.type !== "private" && pending ? h("span", { class: `ticks ${status}`, "aria-label": status }, ticks(status)) : null,
      mine && conversation.type === "group" && !pending && !recalled && m.readCount !== undefined
        ? h("span", { class: "read-count" }, m.readCount > 0 ? `Read by ${m.readCount}` : "Unread")
        : null,
    ),
    m.failed
      ? h(
          "div",
          { class: "failed" },
          m.failed,
          " ",
          h("button", { type: "button", class: "link", onclick: () => retry(m) }, "Retry"),
          h("button", { type: "button", class: "link", onclick: () => discard(m) }, "Discard"),
        )
      : null,
    !pending && !recalled
      ? h(
          "div",
          { class: "actions" },
          conversation.type !== "system" ? h("button", { type: "button", class: "link", onclick: () => startReply(m) }, "Reply") : null,
          h("button", { type: "button", class: "link", onclick: () => forwardDialog(m) }, "Forward"),
          canRecall ? h("button", { type: "button", class: "link", onclick: () => recall(m) }, "Recall") : null,
        )
      : null,
  );
}

function ticks(status) {
  return { sending: "…", failed: "!", sent: "✓", delivered: "✓✓", read: "✓✓" }[status] ?? "";
}

function renderBody(m) {
  const a = m.attachment;
  // An attachment elsewhere than this broker's files: a plain link, never fetched by the page
  // (no <img>, no token).
  if (["image", "file", "voice", "video"].includes(m.format) && a?.url && !m.localPreview && !brokerFilePath(a.url)) {
    return externalLink(a);
  }
  switch (m.format) {
    case "image": {
      const img = h("img", { alt: a?.name ?? "image", width: a?.width, height: a?.height, loading: "lazy" });
      const source = m.localPreview ?? null;
      if (source) img.src = source;
      else if (a?.url) {
        const shown = brokerFilePath(a.thumbnailUrl) ? a.thumbnailUrl : a.url;
        api.blobUrl(shown).then((u) => (img.src = u), () => (img.alt = "image unavailable"));
      }
      return h("button", { type: "button", class: "image", "aria-label": `Open image ${a?.name ?? ""}`, onclick: () => openFile(a) }, img);
    }
    case "file":
    case "voice":
    case "video":
      return h("button", { type: "button", class: "file", onclick: () => openFile(a) }, `${a?.name ?? "file"} (${bytes(a?.size ?? 0)})`);
    case "card":
      return h("div", { class: "card" }, h("strong", {}, a?.title ?? ""), h("p", {}, a?.summary ?? m.content));
    default:
      return h("p", { class: "text" }, m.content);
  }
}

// A link to an external attachment: opened by the user in a new tab, without the page's
// referrer or any access to the page; only http(s) URLs become links.
function externalLink(a) {
  let href = null;
  try {
    const url = new URL(a.url);
    if (url.protocol === "https:" || url.protocol === "http:") href = url.href;
  } catch {
    // Not a URL: shown as text.
  }
  const label = `${a.name ?? a.url} (external link)`;
  if (!href) return h("p", { class: "file external" }, label);
  return h("a", { class: "file external", href, target: "_blank", rel: "noopener noreferrer", referrerpolicy: "no-referrer" }, label);
}

async function openFile(attachment) {
  if (!brokerFilePath(attachment?.url)) return;
  try {
    const url = await api.blobUrl(attachment.url);
    const link = h("a", { href: url, download: attachment.name, target: "_blank", rel: "noopener" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    showError(e);
  }
}
