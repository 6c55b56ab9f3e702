//! Mentions in group messages: who a send may mention, how a mention is stored (a JSON array of
//! user ids on the message, or [`MENTION_ALL`] for everybody), and what reads them: the message's own
//! JSON, the conversation list's marker, offline push in muted conversations and
//! `GET /api/v1/mentions`.

use serde_json::Value;

use super::Im;
use super::json::{MENTION_ALL, MessageJson, SendRequest};
use crate::app_error::AppError;
use crate::domain::{ConversationKind, MemberRole, is_valid_user_id, kind_of};
use crate::store::Target;

impl Im {
    /// Checks the mentions of a send and returns them as stored: only group messages mention;
    /// each named user must be a current member other than the sender, at most
    /// `im.max_mentions` of them; only the owner and admins may mention everybody.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `FORBIDDEN` (everybody, by a plain member), `UNAVAILABLE`.
    pub(super) async fn checked_mentions(
        &self,
        sender: &str,
        target: &Target,
        request: &SendRequest,
    ) -> Result<Option<String>, AppError> {
        let named = request.mentions.as_deref().unwrap_or_default();
        if named.is_empty() && !request.mention_all {
            return Ok(None);
        }
        let conversation = target.conversation_id();
        if kind_of(&conversation) != Some(ConversationKind::Group) {
            return Err(AppError::invalid("only group messages mention"));
        }
        let members = self.store().members(&conversation).await?;
        if request.mention_all {
            let role = members
                .iter()
                .find(|m| m.user_id == sender)
                .and_then(|m| m.role.parse::<MemberRole>().ok());
            if !role.is_some_and(MemberRole::manages) {
                return Err(AppError::forbidden(
                    "only the owner and admins may mention everybody",
                ));
            }
            return Ok(Some(Value::from(vec![MENTION_ALL]).to_string()));
        }
        let max = self.settings().max_mentions;
        let mut users: Vec<&str> = Vec::with_capacity(named.len().min(max));
        for user in named {
            if !is_valid_user_id(user) {
                return Err(AppError::invalid("mentions must be user ids"));
            }
            if user == sender || users.contains(&user.as_str()) {
                continue;
            }
            if !members.iter().any(|m| m.user_id == *user) {
                return Err(AppError::invalid(format!(
                    "{user} is not a member of {conversation}"
                )));
            }
            users.push(user);
            if users.len() > max {
                return Err(AppError::invalid(format!(
                    "at most {max} users may be mentioned"
                )));
            }
        }
        if users.is_empty() {
            return Ok(None);
        }
        Ok(Some(Value::from(users).to_string()))
    }

    /// The caller's recent mentions, newest first: messages of their current groups that name
    /// them or everybody, from when they joined (or last cleared the group's history), not
    /// deleted by them, recalled ones left out. `before` is the id the previous page ended at.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a bad limit, `UNAVAILABLE`.
    pub async fn mentions_of(
        &self,
        user: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<MessageJson>, AppError> {
        if !(1..=100).contains(&limit) {
            return Err(AppError::invalid("limit must be 1 to 100"));
        }
        let rows = self.store().mentions_of(user, limit, before).await?;
        Ok(rows.iter().map(MessageJson::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::im::json::{mentioned_users, mentions, mentions_all};

    #[test]
    fn stored_mentions_read_back() {
        let named = Some(r#"["bob","carol"]"#);
        assert_eq!(mentioned_users(named), vec!["bob", "carol"]);
        assert!(!mentions_all(named));
        assert!(mentions(named, "bob"));
        assert!(!mentions(named, "bo"));
        let all = Some(r#"["*"]"#);
        assert!(mentioned_users(all).is_empty());
        assert!(mentions_all(all));
        assert!(mentions(all, "anyone"));
        assert!(!mentions(None, "bob"));
        assert!(!mentions(Some("not json"), "bob"));
    }
}
