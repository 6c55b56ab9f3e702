//! A group's own rules, kept in its `settings` JSON beside the retention: whether members may
//! leave, whether new members see earlier messages, its own member limit, and whether only the
//! owner and admins may send. Members' nicknames and mutes are columns of their membership.

use serde_json::{Map, Value};

use crate::app_error::AppError;

const ALLOW_MEMBER_EXIT: &str = "allowMemberExit";
const ENABLE_MESSAGE_HISTORY: &str = "enableMessageHistory";
const MAX_MEMBERS: &str = "maxMembers";
const ALL_MUTED: &str = "allMuted";

/// Characters of a nickname.
pub const NICKNAME_MAX_CHARS: usize = 32;

/// A group's rules, with their defaults where unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// Plain members may leave (default true).
    pub allow_member_exit: bool,
    /// New members see the messages from before they joined (default false).
    pub enable_message_history: bool,
    /// The group's own member limit, at most `im.max_group_members`.
    pub max_members: Option<usize>,
    /// Only the owner and admins may send (default false).
    pub all_muted: bool,
}

impl GroupSettings {
    /// The rules of a conversation's settings JSON.
    pub fn of(settings: &str) -> GroupSettings {
        let map = object(settings);
        let flag =
            |key: &str, default: bool| map.get(key).and_then(Value::as_bool).unwrap_or(default);
        GroupSettings {
            allow_member_exit: flag(ALLOW_MEMBER_EXIT, true),
            enable_message_history: flag(ENABLE_MESSAGE_HISTORY, false),
            max_members: map
                .get(MAX_MEMBERS)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok()),
            all_muted: flag(ALL_MUTED, false),
        }
    }

    /// The member limit in force: the group's own, never above `global`.
    pub fn member_limit(&self, global: usize) -> usize {
        self.max_members.map_or(global, |own| own.min(global))
    }
}

/// Changes to a group's rules; `None` leaves one as it is.
#[derive(Clone, Debug, Default)]
pub struct RulesChange {
    /// See [`GroupSettings::allow_member_exit`].
    pub allow_member_exit: Option<bool>,
    /// See [`GroupSettings::enable_message_history`].
    pub enable_message_history: Option<bool>,
    /// `Some(None)` removes the group's own limit.
    pub max_members: Option<Option<i64>>,
    /// See [`GroupSettings::all_muted`].
    pub all_muted: Option<bool>,
}

impl RulesChange {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        self.allow_member_exit.is_none()
            && self.enable_message_history.is_none()
            && self.max_members.is_none()
            && self.all_muted.is_none()
    }

    /// `settings` with the change applied, checked against the global limit and the current
    /// member count.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a limit outside 2 to `global`, or below `members`.
    pub fn apply(&self, settings: &str, global: usize, members: usize) -> Result<String, AppError> {
        let mut map = object(settings);
        if let Some(flag) = self.allow_member_exit {
            map.insert(ALLOW_MEMBER_EXIT.to_owned(), Value::from(flag));
        }
        if let Some(flag) = self.enable_message_history {
            map.insert(ENABLE_MESSAGE_HISTORY.to_owned(), Value::from(flag));
        }
        if let Some(flag) = self.all_muted {
            map.insert(ALL_MUTED.to_owned(), Value::from(flag));
        }
        match self.max_members {
            None => {}
            Some(None) => {
                map.remove(MAX_MEMBERS);
            }
            Some(Some(limit)) => {
                let low = i64::try_from(members.max(2)).unwrap_or(i64::MAX);
                let high = i64::try_from(global).unwrap_or(i64::MAX);
                if !(low..=high).contains(&limit) {
                    return Err(AppError::invalid(format!(
                        "maxMembers must be {low} to {high} (at least the current members)"
                    )));
                }
                map.insert(MAX_MEMBERS.to_owned(), Value::from(limit));
            }
        }
        Ok(Value::Object(map).to_string())
    }
}

fn object(settings: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(settings) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_where_nothing_is_set() {
        let settings = GroupSettings::of("{}");
        assert!(settings.allow_member_exit);
        assert!(!settings.enable_message_history);
        assert!(!settings.all_muted);
        assert_eq!(settings.member_limit(500), 500);
        assert_eq!(GroupSettings::of("not json"), settings);
    }

    #[test]
    fn a_change_keeps_other_keys_and_checks_the_limit() {
        let change = RulesChange {
            max_members: Some(Some(50)),
            all_muted: Some(true),
            ..RulesChange::default()
        };
        let json = change
            .apply(r#"{"messageRetentionDays":7}"#, 500, 3)
            .unwrap();
        let settings = GroupSettings::of(&json);
        assert_eq!(settings.member_limit(500), 50);
        assert_eq!(settings.member_limit(20), 20);
        assert!(settings.all_muted);
        assert!(json.contains("messageRetentionDays"));
        for bad in [1, 2, 501] {
            let change = RulesChange {
                max_members: Some(Some(bad)),
                ..RulesChange::default()
            };
            assert!(change.apply("{}", 500, 3).is_err(), "{bad}");
        }
        let cleared = RulesChange {
            max_members: Some(None),
            ..RulesChange::default()
        }
        .apply(&json, 500, 3)
        .unwrap();
        assert_eq!(GroupSettings::of(&cleared).max_members, None);
    }
}
