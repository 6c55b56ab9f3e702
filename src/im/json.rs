//! The JSON shapes of the contract (sections 5 and 6): requests as they arrive, messages and
//! conversations as they are pushed and returned.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use schema::{ConversationRow, MemberRow, MessageRow};

use crate::domain::{ConversationId, ConversationKind, kind_of};
use crate::store::ConversationSummary;

/// A message as pushed and as returned by the REST API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson {
    /// Snowflake id, as a string.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// `private`, `group`, `system`, `assistant`.
    pub conversation_type: String,
    /// Gapless per conversation.
    pub seq: i64,
    /// The sender.
    pub sender_id: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// `text`, `image`, `file`, `voice`, `video`, `card`.
    pub format: String,
    /// Text content.
    pub content: String,
    /// Attachment object, or null.
    pub attachment: Option<Value>,
    /// The replied-to message id, or null.
    pub reply_to: Option<String>,
    /// `{messageId, conversationId, senderId}` of the forwarded original, or null.
    pub forwarded_from: Option<Value>,
    /// `sent`, `delivered`, `read`, `recalled`.
    pub status: String,
    /// When it was stored.
    pub created_at: i64,
    /// Group messages in history and `GET /messages/{id}`: how many members (other than the
    /// sender, members when it was sent) have read it. Absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_count: Option<i64>,
    /// When its text was last edited; absent when never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Group messages: the users it mentions; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// Group messages: whether it mentions every member.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// History and single-message views: the reactions, as the caller sees them; absent in
    /// live pushes and when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionJson>,
}

/// One emoji's reactions to a message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReactionJson {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: i64,
    /// Whether the caller did (absent in events, which every member shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub me: Option<bool>,
}

/// One message with the message it replies to, as `GET /api/v1/messages/{id}` answers.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDetail {
    /// The message.
    #[serde(flatten)]
    pub message: MessageJson,
    /// The message it replies to, when it has one the caller can see; null otherwise.
    pub reply_to_message: Option<MessageJson>,
}

/// Who read a message, as `GET /api/v1/messages/{id}/readers` answers.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readers {
    /// The message id, as a string.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Its seq.
    pub seq: i64,
    /// How many have read it: the length of `readers`.
    pub read_count: i64,
    /// Members who have read it, sorted.
    pub readers: Vec<String>,
    /// Members who have not, sorted.
    pub unread: Vec<String>,
}

/// The stored entry for "everybody": not a user id (ids cannot contain `*`).
pub const MENTION_ALL: &str = "*";

/// The users a stored `mentions` value names (empty for none, or for everybody).
pub fn mentioned_users(stored: Option<&str>) -> Vec<String> {
    parse_mentions(stored)
        .into_iter()
        .filter(|user| user != MENTION_ALL)
        .collect()
}

/// Whether a stored `mentions` value mentions everybody.
pub fn mentions_all(stored: Option<&str>) -> bool {
    parse_mentions(stored)
        .iter()
        .any(|user| user == MENTION_ALL)
}

/// Whether a stored `mentions` value mentions `user` (by name or as everybody).
pub fn mentions(stored: Option<&str>, user: &str) -> bool {
    parse_mentions(stored)
        .iter()
        .any(|entry| entry == MENTION_ALL || entry == user)
}

fn parse_mentions(stored: Option<&str>) -> Vec<String> {
    stored
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .unwrap_or_default()
}

fn parse_json(text: Option<&str>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

impl From<&MessageRow> for MessageJson {
    fn from(row: &MessageRow) -> MessageJson {
        MessageJson {
            id: row.id.to_string(),
            conversation_id: row.conversation_id.clone(),
            conversation_type: kind_of(&row.conversation_id)
                .map_or("unknown", ConversationKind::as_str)
                .to_owned(),
            seq: row.seq,
            sender_id: row.sender_id.clone(),
            client_msg_id: row.client_msg_id.clone(),
            format: row.format.clone(),
            content: row.content.clone(),
            attachment: parse_json(row.attachment.as_deref()),
            reply_to: row.reply_to.map(|id| id.to_string()),
            forwarded_from: parse_json(row.forwarded_from.as_deref()),
            status: row.status.clone(),
            created_at: row.created_at,
            read_count: None,
            edited_at: row.edited_at,
            mentions: mentioned_users(row.mentions.as_deref()),
            mention_all: mentions_all(row.mentions.as_deref()),
            reactions: Vec::new(),
        }
    }
}

/// A stored message as pushed: the JSON of [`MessageJson`] written straight from the row.
///
/// Every message is pushed at least twice (recipient and sender), so this skips the owned copy
/// of each text field that building a [`MessageJson`] takes; the output is the same bytes.
pub fn message_body(row: &MessageRow) -> Vec<u8> {
    let view = MessageView {
        id: row.id,
        conversation_id: &row.conversation_id,
        conversation_type: kind_of(&row.conversation_id)
            .map_or("unknown", ConversationKind::as_str),
        seq: row.seq,
        sender_id: &row.sender_id,
        client_msg_id: &row.client_msg_id,
        format: &row.format,
        content: &row.content,
        attachment: parse_json(row.attachment.as_deref()),
        reply_to: row.reply_to,
        forwarded_from: parse_json(row.forwarded_from.as_deref()),
        status: &row.status,
        created_at: row.created_at,
        edited_at: row.edited_at,
        mentions: mentioned_users(row.mentions.as_deref()),
        mention_all: mentions_all(row.mentions.as_deref()),
    };
    // Room for the fields' names and the texts, so that the buffer is not grown in steps.
    let mut body = Vec::with_capacity(320 + row.content.len() + row.client_msg_id.len());
    match serde_json::to_writer(&mut body, &view) {
        Ok(()) => body,
        Err(_) => b"{}".to_vec(),
    }
}

/// [`MessageJson`]'s fields, in its order, borrowed from the row.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageView<'a> {
    #[serde(serialize_with = "as_string")]
    id: i64,
    conversation_id: &'a str,
    conversation_type: &'static str,
    seq: i64,
    sender_id: &'a str,
    client_msg_id: &'a str,
    format: &'a str,
    content: &'a str,
    attachment: Option<Value>,
    #[serde(serialize_with = "as_optional_string")]
    reply_to: Option<i64>,
    forwarded_from: Option<Value>,
    status: &'a str,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mention_all: bool,
}

/// Writes an id as a JSON string, as the contract gives ids, without formatting it first.
pub(super) fn as_string<S: serde::Serializer>(id: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

fn as_optional_string<S: serde::Serializer>(
    id: &Option<i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.collect_str(id),
        None => serializer.serialize_none(),
    }
}

/// An entry of the conversation list.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationJson {
    /// The conversation id.
    pub id: String,
    /// `private`, `group`, `system`, `assistant`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Group name, or the peer's id for private chats.
    pub name: Option<String>,
    /// Group avatar.
    pub avatar: Option<String>,
    /// The other user of a private chat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The newest message.
    pub last_message: Option<MessageJson>,
    /// The newest seq.
    pub last_seq: i64,
    /// Messages after the caller's read position.
    pub unread_count: i64,
    /// Groups: whether one of the unread messages mentions the caller (or everybody).
    pub mentioned: bool,
    /// The caller pinned it.
    pub pinned: bool,
    /// The caller muted it.
    pub muted: bool,
    /// The caller archived it.
    pub archived: bool,
    /// The caller hid it and no message came since (such conversations are left out of the
    /// list).
    pub hidden: bool,
    /// The caller cleared its history up to this seq (0: never).
    pub cleared_seq: i64,
    /// Current members.
    pub member_count: i64,
    /// The caller's read position.
    pub read_seq: i64,
    /// `active` or `dissolved`.
    pub status: String,
    /// Group announcement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement: Option<String>,
    /// Group owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Whether plain members may invite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_invite: Option<bool>,
    /// Groups: whether plain members may leave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_member_exit: Option<bool>,
    /// Groups: whether new members see the messages from before they joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_message_history: Option<bool>,
    /// Groups: the group's own member limit, null when only `im.max_group_members` applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_members: Option<Option<usize>>,
    /// Groups: whether only the owner and admins may send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_muted: Option<bool>,
    /// Days after which messages are purged (conversation-wide), or null to keep them.
    pub message_retention_days: Option<i64>,
    /// Group members, in the single-conversation view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberJson>>,
}

/// A group member.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    /// The user.
    pub user_id: String,
    /// `owner`, `admin`, `member`.
    pub role: String,
    /// When they joined.
    pub joined_at: i64,
    /// Their nickname in the group, if they set one.
    pub nickname: Option<String>,
    /// Until when they may not send, for a timed mute; null otherwise (see `muted`).
    pub muted_until: Option<i64>,
    /// Whether they are muted now.
    pub muted: bool,
}

impl From<&MemberRow> for MemberJson {
    fn from(row: &MemberRow) -> MemberJson {
        let muted = row
            .muted_until
            .is_some_and(|until| until > crate::util::now_ms());
        MemberJson {
            user_id: row.user_id.clone(),
            role: row.role.clone(),
            joined_at: row.joined_at,
            nickname: row.nickname.clone(),
            muted_until: row.muted_until.filter(|until| muted && *until != i64::MAX),
            muted,
        }
    }
}

/// The other user of a private conversation `me` is in, from its stored id; `None` for the
/// other kinds.
pub fn peer_of(conversation: &str, me: &str) -> Option<String> {
    ConversationId::parse(conversation)
        .ok()?
        .peer(me)
        .map(str::to_owned)
}

impl ConversationJson {
    /// The list entry of a summary, as seen by `me`.
    pub fn from_summary(summary: &ConversationSummary, me: &str) -> ConversationJson {
        let row: &ConversationRow = &summary.conversation;
        let is_group = row.kind.parse() == Ok(ConversationKind::Group);
        let rules = is_group.then(|| super::group_settings::GroupSettings::of(&row.settings));
        let peer_id = peer_of(&row.id, me);
        ConversationJson {
            id: row.id.clone(),
            kind: row.kind.clone(),
            name: row.name.clone().or_else(|| peer_id.clone()),
            avatar: row.avatar.clone(),
            peer_id,
            last_message: summary.last_message.as_ref().map(MessageJson::from),
            last_seq: row.last_seq,
            unread_count: summary.unread(),
            mentioned: false,
            pinned: summary.member.pinned,
            muted: summary.member.muted,
            archived: summary.member.archived,
            hidden: summary.hidden(),
            cleared_seq: summary.member.cleared_seq,
            member_count: summary.member_count,
            read_seq: summary.member.read_seq.max(summary.member.joined_seq),
            status: row.status.clone(),
            announcement: if is_group {
                row.announcement.clone()
            } else {
                None
            },
            owner_id: if is_group { row.owner_id.clone() } else { None },
            allow_invite: is_group.then_some(row.allow_invite),
            allow_member_exit: rules.map(|r| r.allow_member_exit),
            enable_message_history: rules.map(|r| r.enable_message_history),
            max_members: rules.map(|r| r.max_members),
            all_muted: rules.map(|r| r.all_muted),
            message_retention_days: super::retention::retention_days(&row.settings),
            members: None,
        }
    }
}

/// `SEND /app/private.send`, `/app/group.send`, `POST /api/v1/messages`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// Private chats: the recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// Groups (and any existing conversation): its id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Message format; `text` when missing.
    #[serde(default)]
    pub format: Option<String>,
    /// Text content.
    #[serde(default)]
    pub content: Option<String>,
    /// Attachment for media formats and cards.
    #[serde(default)]
    pub attachment: Option<Value>,
    /// The id of the message this replies to.
    #[serde(default)]
    pub reply_to: Option<Value>,
    /// Group sends: user ids of members to mention.
    #[serde(default)]
    pub mentions: Option<Vec<String>>,
    /// Group sends by owners and admins: mention every member.
    #[serde(default)]
    pub mention_all: bool,
}

/// `SEND /app/message.read`, `POST /api/v1/conversations/{id}/read`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadRequest {
    /// The conversation (STOMP only; REST has it in the path).
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Everything up to this seq is read.
    pub up_to_seq: i64,
}

/// `SEND /app/message.recall`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecallRequest {
    /// The message to recall.
    pub message_id: Value,
}

/// `SEND /app/typing`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingRequest {
    /// Where the user types.
    pub conversation_id: String,
}

/// A system notification: `POST /api/v1/notifications`, or the body of a SEND to
/// `/user/<id>/queue/notifications` (without `userIds`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRequest {
    /// Recipients (REST and the RabbitMQ queue).
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// Title.
    pub title: String,
    /// Text.
    #[serde(default)]
    pub content: String,
    /// Business type; makes the message a `card`.
    #[serde(default)]
    pub biz_type: Option<String>,
    /// Business id.
    #[serde(default)]
    pub biz_id: Option<String>,
    /// Free-form data passed to the client.
    #[serde(default)]
    pub data: Option<Value>,
    /// Idempotency key; generated when missing.
    #[serde(default)]
    pub client_msg_id: Option<String>,
}

/// A message id that may come as a JSON string or number.
pub fn message_id(value: &Value) -> Option<i64> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// `SEND /app/message.edit`, `PATCH /api/v1/messages/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditRequest {
    /// The message to edit (STOMP only; REST has it in the path).
    #[serde(default)]
    pub message_id: Option<Value>,
    /// The new text.
    pub content: String,
}

/// `SEND /app/message.react`, `POST /api/v1/messages/{id}/reactions`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactRequest {
    /// The message (STOMP only; REST has it in the path).
    #[serde(default)]
    pub message_id: Option<Value>,
    /// The emoji.
    pub emoji: String,
    /// Add (`true`, the default) or take back.
    #[serde(default = "yes")]
    pub on: bool,
}

/// `SEND /app/message.pin`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinRequest {
    /// The message.
    pub message_id: Value,
    /// Pin (`true`, the default) or unpin.
    #[serde(default = "yes")]
    pub on: bool,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(conversation_id: &str) -> MessageRow {
        MessageRow {
            id: 7_250_000_000_123,
            conversation_id: conversation_id.into(),
            seq: 42,
            sender_id: "alice".into(),
            client_msg_id: "c-1".into(),
            format: "text".into(),
            content: "h\u{e9}llo \"world\"\n\u{4f60}\u{597d}".into(),
            attachment: None,
            reply_to: None,
            forwarded_from: None,
            status: "sent".into(),
            created_at: 1_700_000_000_000,
            recalled_at: None,
            edited_at: None,
            mentions: None,
            sender_position: Some(3),
            recipient_position: Some(9),
        }
    }

    /// The pushed body and the REST view of a message are the same JSON, field for field and
    /// byte for byte, whatever the row holds.
    #[test]
    fn a_pushed_message_is_written_as_the_rest_view_writes_it() {
        let plain = row("private_alice_bob");
        let mut full = row("group_g1");
        full.attachment = Some(r#"{"fileId":"f1","size":12,"name":"a b.png"}"#.into());
        full.reply_to = Some(7_250_000_000_100);
        full.forwarded_from =
            Some(r#"{"messageId":"5","conversationId":"group_g2","senderId":"carol"}"#.into());
        full.edited_at = Some(1_700_000_000_500);
        full.mentions = Some(r#"["bob","*"]"#.into());
        let mut unparsable = row("assistant_alice");
        unparsable.attachment = Some("not json".into());
        unparsable.mentions = Some("[".into());
        let mut odd = row("nonsense");
        odd.status = "recalled".into();
        odd.content = String::new();
        for row in [plain, full, unparsable, odd] {
            let expected = serde_json::to_vec(&MessageJson::from(&row)).unwrap();
            assert_eq!(
                String::from_utf8(message_body(&row)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
