//! Announcements to all users: sent by backends (role `system`) to `/topic/announcements` or
//! over REST, stored before they are pushed, so that a user who was offline finds the recent
//! ones, with a read marker per user.

use bytes::Bytes;
use serde::Serialize;
use stomp_codec::Headers;

use super::Im;
use crate::app_error::AppError;
use crate::auth::{Identity, Role};
use crate::delivery::Route;
use crate::hub::Publication;
use crate::store::announcements::AnnouncementRow;
use crate::util::now_ms;

/// The topic every user may subscribe to.
pub const ANNOUNCEMENTS_TOPIC: &str = "announcements";

/// Characters of a content type.
const CONTENT_TYPE_MAX_CHARS: usize = 100;

/// An announcement as the API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncementJson {
    /// Its id, as a string; later ones are larger.
    pub id: String,
    /// The backend that sent it.
    pub sender_id: String,
    /// The MIME type of its body.
    pub content_type: String,
    /// Its text.
    pub body: String,
    /// When it was stored.
    pub created_at: i64,
}

impl From<&AnnouncementRow> for AnnouncementJson {
    fn from(row: &AnnouncementRow) -> AnnouncementJson {
        AnnouncementJson {
            id: row.id.to_string(),
            sender_id: row.sender_id.clone(),
            content_type: row.content_type.clone(),
            body: row.body.clone(),
            created_at: row.created_at,
        }
    }
}

/// A page of announcements with the caller's read marker.
pub struct AnnouncementPage {
    /// Newest first.
    pub items: Vec<AnnouncementJson>,
    /// Where the next (older) page starts.
    pub next_cursor: Option<String>,
    /// The newest announcement id the caller has read ("0" for none).
    pub read_up_to: String,
    /// Kept announcements newer than the marker.
    pub unread_count: i64,
}

impl Im {
    /// Stores an announcement and pushes it to `/topic/announcements` with its id in the
    /// `announcement-id` header, the body as sent, and the sender's other `headers` (those of
    /// its SEND that travel with a message) as they came.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `system`, `INVALID_ARGUMENT` for a body that is not UTF-8 text
    /// or a content type over 100 characters, `UNAVAILABLE`.
    pub async fn announce(
        &self,
        sender: &Identity,
        headers: &Headers,
        body: &[u8],
    ) -> Result<AnnouncementJson, AppError> {
        let content_type = headers.get("content-type");
        if !sender.has_role(Role::System) {
            return Err(AppError::forbidden("only role system may announce"));
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| AppError::invalid("an announcement is UTF-8 text"))?;
        let content_type = content_type.unwrap_or("text/plain");
        if content_type.chars().count() > CONTENT_TYPE_MAX_CHARS {
            return Err(AppError::invalid("content type too long"));
        }
        let row = AnnouncementRow {
            // The node's id generator: ids grow with time, also within a millisecond.
            id: self.store().ids.next(),
            sender_id: sender.user_id.clone(),
            content_type: content_type.to_owned(),
            body: body.to_owned(),
            created_at: now_ms(),
        };
        self.store().add_announcement(&row).await?;
        let mut headers: Headers = headers
            .iter()
            .filter(|(name, _)| !matches!(*name, "content-type" | "announcement-id"))
            .collect();
        headers.push("content-type", row.content_type.clone());
        headers.push("announcement-id", row.id.to_string());
        self.hub().publish(
            &Route::Topic(ANNOUNCEMENTS_TOPIC.to_owned()),
            Publication {
                headers,
                body: Bytes::copy_from_slice(row.body.as_bytes()),
                ..Publication::default()
            },
        );
        Ok(AnnouncementJson::from(&row))
    }

    /// A page of the kept announcements, newest first, with `user`'s read marker.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` (limit or cursor), `UNAVAILABLE`.
    pub async fn announcements(
        &self,
        user: &str,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<AnnouncementPage, AppError> {
        let limit = super::page_limit(limit)?;
        let before = cursor
            .map(|text| {
                text.parse::<i64>()
                    .map_err(|_| AppError::invalid("cursor is not one this API gave"))
            })
            .transpose()?;
        let rows = self.store().announcements_page(before, limit).await?;
        let (marker, unread_count) = self.store().announcement_marker(user).await?;
        let next_cursor = (i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit)
            .then(|| rows.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(AnnouncementPage {
            items: rows.iter().map(AnnouncementJson::from).collect(),
            next_cursor,
            read_up_to: marker.to_string(),
            unread_count,
        })
    }

    /// Moves `user`'s read marker to the announcement `up_to` (never back).
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for an id that is no number, `UNAVAILABLE`.
    pub async fn read_announcements(&self, user: &str, up_to: &str) -> Result<(), AppError> {
        let up_to: i64 = up_to
            .parse()
            .map_err(|_| AppError::invalid("upToId is not an announcement id"))?;
        self.store().mark_announcements_read(user, up_to).await?;
        Ok(())
    }
}
