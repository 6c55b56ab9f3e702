//! Diesel `table!` definitions and row types shared by both storage backends.
//!
//! The PostgreSQL and SQLite migrations (`migrations/postgres`, `migrations/sqlite`) create the
//! same logical schema with portable types (BIGINT, TEXT, BOOL, epoch milliseconds as BIGINT), so
//! these definitions serve both.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The tables.
pub mod tables {
    #![allow(missing_docs)]

    diesel::table! {
        /// One conversation: private, group, system or assistant.
        conversations (id) {
            id -> Text,
            kind -> Text,
            name -> Nullable<Text>,
            avatar -> Nullable<Text>,
            announcement -> Nullable<Text>,
            owner_id -> Nullable<Text>,
            allow_invite -> Bool,
            last_seq -> BigInt,
            last_message_id -> Nullable<BigInt>,
            last_activity_at -> BigInt,
            status -> Text,
            settings -> Text,
            created_at -> BigInt,
        }
    }

    diesel::table! {
        /// A user's membership of a conversation, with their read position and settings.
        members (conversation_id, user_id) {
            conversation_id -> Text,
            user_id -> Text,
            role -> Text,
            joined_at -> BigInt,
            left_at -> Nullable<BigInt>,
            joined_seq -> BigInt,
            read_seq -> BigInt,
            cleared_seq -> BigInt,
            delivered_seq -> BigInt,
            pinned -> Bool,
            muted -> Bool,
            archived -> Bool,
        }
    }

    diesel::table! {
        /// Messages, with their gapless per-conversation sequence.
        messages (id) {
            id -> BigInt,
            conversation_id -> Text,
            seq -> BigInt,
            sender_id -> Text,
            client_msg_id -> Text,
            format -> Text,
            content -> Text,
            attachment -> Nullable<Text>,
            reply_to -> Nullable<BigInt>,
            forwarded_from -> Nullable<Text>,
            status -> Text,
            created_at -> BigInt,
            recalled_at -> Nullable<BigInt>,
        }
    }

    diesel::table! {
        /// Per-user soft deletions of messages.
        message_deletions (user_id, message_id) {
            user_id -> Text,
            message_id -> BigInt,
            conversation_id -> Text,
            deleted_at -> BigInt,
        }
    }

    diesel::table! {
        /// Domain events waiting to be published to `im.events`.
        event_outbox (id) {
            id -> BigInt,
            event -> Text,
            body -> Text,
            created_at -> BigInt,
        }
    }

    diesel::joinable!(members -> conversations (conversation_id));
    diesel::joinable!(messages -> conversations (conversation_id));
    diesel::allow_tables_to_appear_in_same_query!(
        conversations,
        members,
        messages,
        message_deletions,
        event_outbox
    );
}

pub use tables::*;

use diesel::prelude::*;

/// A row of `conversations`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = conversations)]
pub struct ConversationRow {
    /// `private_<a>_<b>`, `group_<hex>`, `system_<user>`, `assistant_<user>`.
    pub id: String,
    /// `private`, `group`, `system` or `assistant`.
    pub kind: String,
    /// Group name.
    pub name: Option<String>,
    /// Group avatar URL.
    pub avatar: Option<String>,
    /// Group announcement.
    pub announcement: Option<String>,
    /// Group owner.
    pub owner_id: Option<String>,
    /// Whether plain members may invite.
    pub allow_invite: bool,
    /// The seq of the newest message; 0 when empty.
    pub last_seq: i64,
    /// The newest message.
    pub last_message_id: Option<i64>,
    /// When the conversation last changed, for ordering lists.
    pub last_activity_at: i64,
    /// `active` or `dissolved`.
    pub status: String,
    /// JSON object of conversation settings.
    pub settings: String,
    /// Creation time.
    pub created_at: i64,
}

/// A row of `members`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = members)]
pub struct MemberRow {
    /// The conversation.
    pub conversation_id: String,
    /// The member.
    pub user_id: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// When they joined.
    pub joined_at: i64,
    /// When they left or were removed; `None` while a member.
    pub left_at: Option<i64>,
    /// The conversation's last seq when they joined: earlier messages are not theirs.
    pub joined_seq: i64,
    /// Everything up to this seq is read.
    pub read_seq: i64,
    /// Messages up to this seq were cleared from their history.
    pub cleared_seq: i64,
    /// Messages of others up to this seq reached one of their sessions (private chats).
    pub delivered_seq: i64,
    /// Pinned in their list.
    pub pinned: bool,
    /// Muted.
    pub muted: bool,
    /// Archived.
    pub archived: bool,
}

/// A row of `messages`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    /// Snowflake id.
    pub id: i64,
    /// The conversation.
    pub conversation_id: String,
    /// Gapless per conversation, from 1.
    pub seq: i64,
    /// The sender.
    pub sender_id: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// `text`, `image`, `file`, `voice`, `video`, `card`.
    pub format: String,
    /// Text content; empty once recalled.
    pub content: String,
    /// JSON attachment.
    pub attachment: Option<String>,
    /// The message this replies to.
    pub reply_to: Option<i64>,
    /// JSON `{messageId, conversationId, senderId}` of the forwarded original.
    pub forwarded_from: Option<String>,
    /// `sent`, `delivered`, `read` or `recalled`.
    pub status: String,
    /// When it was stored.
    pub created_at: i64,
    /// When it was recalled.
    pub recalled_at: Option<i64>,
}

/// A row of `message_deletions`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = message_deletions)]
pub struct MessageDeletionRow {
    /// Who deleted it for themselves.
    pub user_id: String,
    /// The message.
    pub message_id: i64,
    /// Its conversation, so history queries can filter without a join.
    pub conversation_id: String,
    /// When.
    pub deleted_at: i64,
}

/// A row of `event_outbox`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = event_outbox)]
pub struct OutboxRow {
    /// Time-ordered id: events are published in this order.
    pub id: i64,
    /// The event name, also the routing key.
    pub event: String,
    /// The JSON body.
    pub body: String,
    /// When it was written.
    pub created_at: i64,
}
