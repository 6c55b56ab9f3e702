// Rendering the messages of the open chat: text, images and files of this broker (fetched with
// the token), external attachments as plain links, replies, delivery ticks, edits, reactions,
// mentions of me and message actions.
import { brokerFilePath } from "./api.js";
import { chatOf, findMessage, mentionsMe, messagesOf, previewOf, state } from "./state.js";
import { bytes, clear, h, time } from "./dom.js";
import { api, showError, ui } from "./context.js";
import { canPin, myRole } from "./chat.js";
import { discard, pin, react, recall, retry, startEdit, startReply } from "./composer.js";
import { forwardDialog } from "./dialogs.js";

const RECALL_WINDOW_MS = 120_000;
// The broker's default im.edit_window_s; it has the last word.
const EDIT_WINDOW_MS = 48 * 3600_000;
const QUICK_REACTIONS = ["👍", "❤️", "😂"];

export function renderMessages({ stick = false } = {}) {
  const id = state.openId;
  const box = ui.messages;
  if (!id || !box) return;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const top = box.scrollTop;
  const conversation = state.conversations.get(id);
  const chat = chatOf(id);
  const pinned = new Set((state.pins.get(id) ?? []).map((p) => p.message.id));
  const items = messagesOf(id).map((m) => renderMessage(m, conversation, pinned.has(m.id)));
  clear(
    box,
    chat.hasMore && chat.loaded ? h("div", { class: "older" }, "Scroll up for older messages") : chat.loaded ? h("div", { class: "older" }, "Start of the conversation") : null,
    items,
  );
  if (stick || nearBottom) box.scrollTop = box.scrollHeight;
  else box.scrollTop = top;
}

function renderMessage(m, conversation, pinned) {
  const mine = m.senderId === state.me;
  const pending = !m.seq;
  const recalled = m.status === "recalled";
  const role = conversation.type === "group" ? myRole(conversation.id) : null;
  const canRecall = !pending && !recalled && ((mine && Date.now() - m.createdAt < RECALL_WINDOW_MS) || role === "owner" || role === "admin");
  const canEdit = mine && m.format === "text" && Date.now() - m.createdAt < EDIT_WINDOW_MS;
  const canReact = conversation.type === "private" || conversation.type === "group";
  const quoted = m.replyTo ? findMessage(m.replyTo) : null;
  const status = pending ? (m.failed ? "failed" : "sending") : m.status;
  return h(
    "article",
    {
      class: `msg ${mine ? "mine" : "theirs"}${recalled ? " recalled" : ""}${pending ? " pending" : ""}${!recalled && mentionsMe(m) ? " mentioned" : ""}`,
      dataset: { seq: m.seq ?? "", clientMsgId: m.clientMsgId, status, id: m.id ?? "" },
      "aria-label": `${mine ? "You" : m.senderId}: ${previewOf(m)}`,
    },
    !mine && conversation.type !== "private" ? h("div", { class: "sender" }, m.senderId) : null,
    m.forwardedFrom ? h("div", { class: "forwarded" }, `Forwarded from ${m.forwardedFrom.senderId}`) : null,
    m.replyTo ? h("div", { class: "quote" }, quoted ? `${quoted.senderId}: ${previewOf(quoted)}` : "a message") : null,
    h("div", { class: "body" }, recalled ? h("em", {}, mine ? "You recalled a message" : "Message recalled") : renderBody(m)),
    !recalled && m.reactions?.length ? renderReactions(m) : null,
    h(
      "div",
      { class: "meta" },
      pinned ? h("span", { class: "pinned-mark", title: "Pinned" }, "📌") : null,
      m.editedAt && !recalled ? h("span", { class: "edited", title: `Edited ${time(m.editedAt)}` }, "(edited)") : null,
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
          canEdit ? h("button", { type: "button", class: "link", onclick: () => startEdit(m) }, "Edit") : null,
          canPin(conversation)
            ? h("button", { type: "button", class: "link", "aria-label": pinned ? "Unpin message" : "Pin message", onclick: () => pin(m, !pinned) }, pinned ? "Unpin" : "Pin")
            : null,
          canReact
            ? QUICK_REACTIONS.map((emoji) => {
                const on = !m.reactions?.some((r) => r.emoji === emoji && r.me);
                return h("button", { type: "button", class: "link", "aria-label": `${on ? "React with" : "Take back"} ${emoji}`, onclick: () => react(m, emoji, on) }, emoji);
              })
            : null,
        )
      : null,
  );
}

// The counts under a message; mine are highlighted, and clicking one adds or takes back mine.
function renderReactions(m) {
  return h(
    "div",
    { class: "reactions" },
    m.reactions.map((r) =>
      h(
        "button",
        {
          type: "button",
          class: `reaction${r.me ? " mine" : ""}`,
          "aria-pressed": r.me ? "true" : "false",
          title: r.me ? "Take back your reaction" : "React too",
          dataset: { emoji: r.emoji },
          onclick: () => react(m, r.emoji, !r.me),
        },
        `${r.emoji} ${r.count}`,
      ),
    ),
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
