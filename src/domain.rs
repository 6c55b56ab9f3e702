//! The chat domain's words as types: conversation ids and kinds, member roles, conversation and
//! message statuses. The store keeps them as text (both databases, and the contract's JSON, spell
//! them the same way); everything above the store compares these types, so that a misspelt
//! `"onwer"` is a compile error rather than a silently false comparison, and the rules that hang
//! on a word (who may manage whom, what a conversation id says about its members) live once.
//!
//! Depends on nothing of the broker: the store, the IM layer and the REST adapter all use it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a text was expected to name and did not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {what}: {text:?}")]
pub struct ParseError {
    what: &'static str,
    text: String,
}

impl ParseError {
    fn new(what: &'static str, text: &str) -> ParseError {
        // Bounded: the text comes from a peer and ends up in an error message.
        let text: String = text.chars().take(80).collect();
        ParseError { what, text }
    }
}

/// Declares a closed vocabulary spelt as lowercase text in the store and on the wire.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text the store and the contract use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(text: &str) -> Result<$name, ParseError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseError::new($what, text)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary! {
    /// The four kinds of conversation; the kind is the prefix of the conversation's id.
    ConversationKind, "conversation kind" {
        /// Between two users (or one user and themself).
        Private = "private",
        /// A group with an owner, admins and members.
        Group = "group",
        /// One user's system notifications.
        System = "system",
        /// One user's conversation with the assistant.
        Assistant = "assistant",
    }
}

vocabulary! {
    /// A member's role in a group (private, system and assistant members are `member`).
    MemberRole, "member role" {
        /// Created the group, or was handed it; one per group.
        Owner = "owner",
        /// Manages members and settings, under the owner.
        Admin = "admin",
        /// Everyone else.
        Member = "member",
    }
}

vocabulary! {
    /// Whether a conversation still takes messages.
    ConversationStatus, "conversation status" {
        /// Open.
        Active = "active",
        /// A group its owner dissolved: readable history, no new messages.
        Dissolved = "dissolved",
    }
}

vocabulary! {
    /// A message's delivery status, as stored and as the contract shows it.
    MessageStatus, "message status" {
        /// Stored.
        Sent = "sent",
        /// Reached a session of its recipient.
        Delivered = "delivered",
        /// Read by its recipient.
        Read = "read",
        /// Withdrawn by its sender or a group's manager: the content is gone.
        Recalled = "recalled",
    }
}

impl MemberRole {
    /// Whether this role manages the group (settings, members, recalls of others).
    pub fn manages(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }

    /// Whether a member with this role may remove, or recall the messages of, a member with
    /// `other`: the owner manages everyone else, an admin manages plain members.
    pub fn outranks(self, other: MemberRole) -> bool {
        match self {
            MemberRole::Owner => other != MemberRole::Owner,
            MemberRole::Admin => other == MemberRole::Member,
            MemberRole::Member => false,
        }
    }
}

/// Whether `id` can be a user id: 1 to 64 bytes of ASCII letters, digits, `-`, `.`, `@`, `:`.
/// No `_`, which is what makes a conversation id's parts unambiguous.
pub fn is_valid_user_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'@' | b':'))
}

/// The prefix of a group's hub topic: `group.<conversation id>`, reached by clients as
/// `/topic/group.<conversation id>`.
pub const GROUP_TOPIC_PREFIX: &str = "group.";

/// A conversation id, checked: `private_<min>_<max>` of two user ids in byte order,
/// `group_<32 lowercase hex>`, `system_<user>` or `assistant_<user>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConversationId {
    text: String,
    kind: ConversationKind,
}

impl ConversationId {
    /// Parses and checks a conversation id as a peer sent it.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when `text` is not one of the four forms.
    pub fn parse(text: &str) -> Result<ConversationId, ParseError> {
        let invalid = || ParseError::new("conversation id", text);
        let (prefix, rest) = text.split_once('_').ok_or_else(invalid)?;
        let kind: ConversationKind = prefix.parse().map_err(|_| invalid())?;
        let valid = match kind {
            ConversationKind::Private => rest
                .split_once('_')
                .is_some_and(|(a, b)| is_valid_user_id(a) && is_valid_user_id(b) && a <= b),
            ConversationKind::Group => {
                rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            ConversationKind::System | ConversationKind::Assistant => is_valid_user_id(rest),
        };
        if !valid {
            return Err(invalid());
        }
        Ok(ConversationId {
            text: text.to_owned(),
            kind,
        })
    }

    /// The private conversation of two users, in either order.
    pub fn private(a: &str, b: &str) -> ConversationId {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        ConversationId {
            text: format!("private_{low}_{high}"),
            kind: ConversationKind::Private,
        }
    }

    /// A group's conversation from its 32 hex digits.
    pub fn group(hex: &str) -> ConversationId {
        ConversationId {
            text: format!("group_{hex}"),
            kind: ConversationKind::Group,
        }
    }

    /// A user's system notifications.
    pub fn system(user: &str) -> ConversationId {
        ConversationId {
            text: format!("system_{user}"),
            kind: ConversationKind::System,
        }
    }

    /// A user's conversation with the assistant.
    pub fn assistant(user: &str) -> ConversationId {
        ConversationId {
            text: format!("assistant_{user}"),
            kind: ConversationKind::Assistant,
        }
    }

    /// The id as text, as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Which kind of conversation this is.
    pub fn kind(&self) -> ConversationKind {
        self.kind
    }

    /// The two users of a private conversation (the same user twice when they talk to
    /// themself); `None` for the other kinds.
    pub fn participants(&self) -> Option<(&str, &str)> {
        match self.kind {
            ConversationKind::Private => self.rest().split_once('_'),
            _ => None,
        }
    }

    /// The other user of a private conversation seen by `me`; `None` when this is not a
    /// private conversation of `me`. Talking to oneself, the peer is oneself.
    pub fn peer(&self, me: &str) -> Option<&str> {
        let (a, b) = self.participants()?;
        if a == me {
            Some(b)
        } else if b == me {
            Some(a)
        } else {
            None
        }
    }

    /// The one user a system or assistant conversation belongs to.
    pub fn owner(&self) -> Option<&str> {
        match self.kind {
            ConversationKind::System | ConversationKind::Assistant => Some(self.rest()),
            _ => None,
        }
    }

    /// The hub topic a group's messages and events are published to (`group.<id>`, reached
    /// by clients as `/topic/group.<id>`); `None` for the other kinds, which are delivered to
    /// their users' queues.
    pub fn topic(&self) -> Option<String> {
        (self.kind == ConversationKind::Group).then(|| format!("{GROUP_TOPIC_PREFIX}{}", self.text))
    }

    /// Whether `user` is one of the users this id itself names (private, system and assistant
    /// conversations); for a group the membership is in the store, and this is `false`.
    pub fn names(&self, user: &str) -> bool {
        match self.kind {
            ConversationKind::Private => self.peer(user).is_some(),
            ConversationKind::System | ConversationKind::Assistant => self.rest() == user,
            ConversationKind::Group => false,
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.kind.as_str().len() + 1..]
    }
}

impl PartialOrd for ConversationId {
    fn partial_cmp(&self, other: &ConversationId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ConversationId {
    /// By text: the kind is a prefix of it.
    fn cmp(&self, other: &ConversationId) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ConversationId {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<ConversationId, ParseError> {
        ConversationId::parse(text)
    }
}

impl AsRef<str> for ConversationId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<ConversationId> for String {
    fn from(id: ConversationId) -> String {
        id.text
    }
}

impl Serialize for ConversationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ConversationId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ConversationId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The kind a stored conversation id names, for ids read back from the store (which holds
/// only ids it checked); `None` for text that is not a conversation id at all.
pub fn kind_of(id: &str) -> Option<ConversationKind> {
    id.split_once('_')
        .and_then(|(prefix, _)| prefix.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_forms_parse_and_say_their_kind() {
        let cases = [
            ("private_alice_bob", ConversationKind::Private),
            ("private_bob_bob", ConversationKind::Private),
            (
                "group_0123456789abcdef0123456789abcdef",
                ConversationKind::Group,
            ),
            ("system_alice", ConversationKind::System),
            ("assistant_a.b@c:d-e", ConversationKind::Assistant),
        ];
        for (text, kind) in cases {
            let id = ConversationId::parse(text).expect(text);
            assert_eq!(id.kind(), kind, "{text}");
            assert_eq!(id.to_string(), text);
            assert_eq!(kind_of(text), Some(kind));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        for text in [
            "",
            "private",
            "private_",
            "private_bob_alice",
            "private_alice",
            "private_alice_bob_carol",
            "group_xyz",
            "group_0123456789ABCDEF0123456789ABCDEF",
            "group_0123456789abcdef0123456789abcdef0",
            "system_",
            "system_a/b",
            "channel_alice",
            "assistant_ alice",
        ] {
            assert!(ConversationId::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn a_private_id_orders_its_users_and_names_the_peer() {
        let id = ConversationId::private("bob", "alice");
        assert_eq!(id.as_str(), "private_alice_bob");
        assert_eq!(id, ConversationId::private("alice", "bob"));
        assert_eq!(id.peer("alice"), Some("bob"));
        assert_eq!(id.peer("bob"), Some("alice"));
        assert_eq!(id.peer("carol"), None);
        assert!(id.names("alice") && !id.names("carol"));
        assert_eq!(ConversationId::private("al", "al").peer("al"), Some("al"));
        assert_eq!(id.topic(), None);
    }

    #[test]
    fn system_and_assistant_ids_belong_to_one_user_and_groups_have_a_topic() {
        assert_eq!(ConversationId::system("alice").owner(), Some("alice"));
        assert_eq!(ConversationId::assistant("bob").owner(), Some("bob"));
        assert!(ConversationId::system("alice").names("alice"));
        let group = ConversationId::group("0123456789abcdef0123456789abcdef");
        assert_eq!(
            group.topic().as_deref(),
            Some("group.group_0123456789abcdef0123456789abcdef")
        );
        assert_eq!(group.owner(), None);
        assert!(!group.names("alice"));
    }

    #[test]
    fn vocabularies_round_trip_their_text() {
        for role in MemberRole::ALL {
            assert_eq!(role.as_str().parse::<MemberRole>(), Ok(*role));
        }
        for status in MessageStatus::ALL {
            assert_eq!(status.as_str().parse::<MessageStatus>(), Ok(*status));
        }
        for status in ConversationStatus::ALL {
            assert_eq!(status.as_str().parse::<ConversationStatus>(), Ok(*status));
        }
        assert!("Owner".parse::<MemberRole>().is_err());
        assert_eq!(
            serde_json::to_string(&MessageStatus::Recalled)
                .ok()
                .as_deref(),
            Some("\"recalled\"")
        );
        assert!(serde_json::from_str::<MemberRole>("\"root\"").is_err());
    }

    #[test]
    fn owners_outrank_admins_who_outrank_members() {
        use MemberRole::*;
        assert!(Owner.outranks(Admin) && Owner.outranks(Member) && !Owner.outranks(Owner));
        assert!(Admin.outranks(Member) && !Admin.outranks(Admin) && !Admin.outranks(Owner));
        assert!(!Member.outranks(Member));
        assert!(Owner.manages() && Admin.manages() && !Member.manages());
    }
}
