//! Contacts with verification: a user asks another to become contacts (with a short note), the
//! other accepts or declines, the asker may cancel, either may end it. Events go to every
//! session of both users on `/user/queue/events`. With `im.private_policy = "contacts"` only
//! contacts may send each other private messages.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Im;
use super::limits::Action;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, Role, is_valid_user_id};
use crate::config::PrivatePolicy;
use crate::store::contacts::{ContactRequestRow, status};
use crate::store::safety::row_id;
use crate::util::now_ms;

/// Characters of a request's note.
const MAX_NOTE_CHARS: usize = 200;

/// `POST /api/v1/contact-requests`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactRequest {
    /// Who to ask.
    pub user_id: String,
    /// A short note to them.
    #[serde(default)]
    pub note: Option<String>,
}

/// A contact request as the API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactRequestJson {
    /// Its id, as a string.
    pub id: String,
    /// Who asks.
    pub from_user_id: String,
    /// Who is asked.
    pub to_user_id: String,
    /// The note.
    pub note: String,
    /// `pending`, `accepted`, `declined`, `cancelled`.
    pub status: String,
    /// When it was made.
    pub created_at: i64,
    /// When it was decided (or made).
    pub updated_at: i64,
}

impl From<&ContactRequestRow> for ContactRequestJson {
    fn from(row: &ContactRequestRow) -> ContactRequestJson {
        ContactRequestJson {
            id: row.id.to_string(),
            from_user_id: row.from_user.clone(),
            to_user_id: row.to_user.clone(),
            note: row.note.clone(),
            status: row.status.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A decision on a request, by its recipient or its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The recipient accepts.
    Accept,
    /// The recipient declines.
    Decline,
    /// The sender takes it back.
    Cancel,
}

fn no_request() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such contact request")
}

impl Im {
    /// Asks `request.user_id` to become the caller's contact. Asking someone who has a pending
    /// request to the caller accepts theirs; asking again while the caller's own is pending
    /// answers that one.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `CONFLICT` (already contacts), `BLOCKED` (the user blocked the caller),
    /// `RATE_LIMITED` (`limits.contact_request_rate`), `UNAVAILABLE`.
    pub async fn request_contact(
        &self,
        caller: &Identity,
        request: ContactRequest,
    ) -> Result<ContactRequestJson, AppError> {
        let me = caller.user_id.as_str();
        let peer = request.user_id.as_str();
        if !is_valid_user_id(peer) || peer == me {
            return Err(AppError::invalid("userId must be another user's id"));
        }
        let note = request.note.as_deref().unwrap_or_default().trim();
        if note.chars().count() > MAX_NOTE_CHARS {
            return Err(AppError::invalid(format!(
                "note must be at most {MAX_NOTE_CHARS} characters"
            )));
        }
        if self.store().are_contacts(me, peer).await? {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("{peer} is already a contact"),
            ));
        }
        if self.store().blocked_between(me, peer).await? {
            return Err(AppError::new(
                ErrorCode::Blocked,
                format!("{peer} and you cannot become contacts: one blocked the other"),
            ));
        }
        if let Some(theirs) = self.store().pending_contact_request(peer, me).await? {
            return self.decide(&theirs, status::ACCEPTED).await;
        }
        if let Some(mine) = self.store().pending_contact_request(me, peer).await? {
            return Ok(ContactRequestJson::from(&mine));
        }
        self.limit(Action::ContactRequest, me).await?;
        let now = now_ms();
        let row = self
            .store()
            .add_contact_request(&ContactRequestRow {
                id: row_id(),
                from_user: me.to_owned(),
                to_user: peer.to_owned(),
                note: note.to_owned(),
                status: status::PENDING.to_owned(),
                created_at: now,
                updated_at: now,
            })
            .await?;
        let json = ContactRequestJson::from(&row);
        // Both: the asker's other devices list it among the requests waiting.
        self.push_user(peer, "events", "contact.request", &json);
        self.push_user(me, "events", "contact.request", &json);
        Ok(json)
    }

    /// Accepts or declines a request to the caller, or cancels one of theirs.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` (no such request, or not the caller's to decide), `CONFLICT` (decided
    /// already), `UNAVAILABLE`.
    pub async fn decide_contact(
        &self,
        caller: &Identity,
        id: i64,
        decision: Decision,
    ) -> Result<ContactRequestJson, AppError> {
        let row = self
            .store()
            .contact_request(id)
            .await?
            .ok_or_else(no_request)?;
        let (party, outcome) = match decision {
            Decision::Accept => (&row.to_user, status::ACCEPTED),
            Decision::Decline => (&row.to_user, status::DECLINED),
            Decision::Cancel => (&row.from_user, status::CANCELLED),
        };
        if *party != caller.user_id {
            return Err(no_request());
        }
        self.decide(&row, outcome).await
    }

    async fn decide(
        &self,
        row: &ContactRequestRow,
        outcome: &'static str,
    ) -> Result<ContactRequestJson, AppError> {
        let decided = self
            .store()
            .decide_contact_request(row.id, outcome, now_ms())
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::Conflict, "the request was decided already"))?;
        let json = ContactRequestJson::from(&decided);
        if outcome == status::ACCEPTED {
            for (user, contact) in [
                (&decided.from_user, &decided.to_user),
                (&decided.to_user, &decided.from_user),
            ] {
                self.push_user(
                    user,
                    "events",
                    "contact.accepted",
                    &json!({"userId": contact, "request": json}),
                );
            }
        }
        Ok(json)
    }

    /// Ends the caller's contact with `peer`, for both.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` when they are not contacts, `UNAVAILABLE`.
    pub async fn remove_contact(&self, caller: &Identity, peer: &str) -> Result<(), AppError> {
        if !self.store().remove_contact(&caller.user_id, peer).await? {
            return Err(AppError::new(
                ErrorCode::NotFound,
                format!("{peer} is not a contact"),
            ));
        }
        self.push_user(
            &caller.user_id,
            "events",
            "contact.removed",
            &json!({"userId": peer}),
        );
        self.push_user(
            peer,
            "events",
            "contact.removed",
            &json!({"userId": caller.user_id}),
        );
        Ok(())
    }

    /// Whether `im.private_policy` asks anything of `sender`: when it does not, a send need
    /// not build (and allocate) [`Im::check_private_policy`]'s future at all.
    pub(super) fn private_policy_applies(&self, sender: &Identity) -> bool {
        self.settings().private_policy != PrivatePolicy::Open
            && !sender.has_role(Role::System)
            && !sender.has_role(Role::Staff)
    }

    /// Whether `sender` may send a private message to `peer` under `im.private_policy`.
    ///
    /// # Errors
    ///
    /// `NOT_CONTACT`, `UNAVAILABLE`.
    pub(super) async fn check_private_policy(
        &self,
        sender: &Identity,
        peer: &str,
    ) -> Result<(), AppError> {
        if !self.private_policy_applies(sender)
            || self.store().are_contacts(&sender.user_id, peer).await?
        {
            return Ok(());
        }
        Err(AppError::new(
            ErrorCode::NotContact,
            format!("{peer} is not your contact: send a contact request first"),
        ))
    }
}

/// One of a user's contacts.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactJson {
    /// The contact.
    pub user_id: String,
    /// Contacts since.
    pub since: i64,
    /// Whether they have a session anywhere in the cluster.
    pub online: bool,
    /// When they were last online, when they are not.
    pub last_seen_at: Option<i64>,
}

/// A page of a listing, and where the next one starts.
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

impl Im {
    /// A page of `user`'s contacts by id, with their presence; with `online_only`, those
    /// online (a page may then hold fewer than `limit`: follow its cursor).
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` (limit), `UNAVAILABLE`.
    pub async fn contacts(
        &self,
        user: &str,
        online_only: bool,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<ContactJson>, AppError> {
        let limit = super::page_limit(limit)?;
        let rows = self.store().contacts_page(user, cursor, limit).await?;
        let next_cursor = (i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit)
            .then(|| rows.last().map(|(id, _)| id.clone()))
            .flatten();
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        let presence = self.presence().lookup(&ids).await;
        let items = rows
            .iter()
            .zip(presence)
            .map(|((id, since), presence)| ContactJson {
                user_id: id.clone(),
                since: *since,
                online: presence.online,
                last_seen_at: presence.last_seen_at,
            })
            .filter(|contact| !online_only || contact.online)
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// A page of the pending requests to `user` (`incoming`) or from them, newest first.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` (limit or cursor), `UNAVAILABLE`.
    pub async fn contact_requests(
        &self,
        user: &str,
        incoming: bool,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<ContactRequestJson>, AppError> {
        let limit = super::page_limit(limit)?;
        let after = match cursor {
            None => None,
            Some(text) => Some(
                text.split_once('.')
                    .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)))
                    .ok_or_else(|| AppError::invalid("cursor is not one this API gave"))?,
            ),
        };
        let rows = self
            .store()
            .pending_contact_requests(user, incoming, after, limit)
            .await?;
        let next_cursor = (i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit)
            .then(|| rows.last().map(|r| format!("{}.{}", r.created_at, r.id)))
            .flatten();
        Ok(Page {
            items: rows.iter().map(ContactRequestJson::from).collect(),
            next_cursor,
        })
    }
}
