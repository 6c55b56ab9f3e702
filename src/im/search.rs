//! Substring search over the caller's conversations, newest first, with cursor paging
//! (`GET /api/v1/search`).

use super::Im;
use super::json::MessageJson;
use crate::app_error::AppError;
use crate::auth::Identity;
use crate::store::search::SearchQuery;

/// The formats a search may be narrowed to.
const FORMATS: [&str; 6] = ["text", "image", "file", "voice", "video", "card"];

/// A search as the request gave it; each field is checked in this order (an empty one counts
/// as absent, except `q`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchParams<'a> {
    /// The text to find: 1 to 100 characters once trimmed.
    pub q: Option<&'a str>,
    /// Results per page, 1 to 100 (20 when absent).
    pub limit: Option<&'a str>,
    /// Only this conversation, which the caller must be in.
    pub conversation_id: Option<&'a str>,
    /// Only this message format.
    pub format: Option<&'a str>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<&'a str>,
    /// Only messages created at or after this time (epoch ms).
    pub from: Option<&'a str>,
    /// Only messages created at or before this time (epoch ms).
    pub to: Option<&'a str>,
}

/// One page of results.
pub struct SearchPage {
    /// The messages found, newest first.
    pub items: Vec<MessageJson>,
    /// Where the next page starts, when it may have more.
    pub next_cursor: Option<String>,
}

fn integer(value: Option<&str>, name: &str) -> Result<Option<i64>, AppError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| AppError::invalid(format!("{name} must be an integer")))
        })
        .transpose()
}

impl Im {
    /// Searches the caller's conversations.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a bad parameter; `NOT_FOUND`, `NOT_MEMBER` for a conversation
    /// the caller is not in; `UNAVAILABLE`.
    pub async fn search(
        &self,
        caller: &Identity,
        params: SearchParams<'_>,
    ) -> Result<SearchPage, AppError> {
        let text = params.q.map(str::trim).unwrap_or_default();
        if text.is_empty() || text.chars().count() > 100 {
            return Err(AppError::invalid("q must be 1 to 100 characters"));
        }
        let limit = integer(params.limit, "limit")?.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(AppError::invalid("limit must be 1 to 100"));
        }
        let conversation = params
            .conversation_id
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if let Some(id) = &conversation {
            self.membership(&super::conversation_id(id)?, &caller.user_id)
                .await?;
        }
        let format = params.format.filter(|f| !f.is_empty()).map(str::to_owned);
        if let Some(format) = &format
            && !FORMATS.contains(&format.as_str())
        {
            return Err(AppError::invalid(format!("unknown format {format:?}")));
        }
        let before_id = params
            .cursor
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| AppError::invalid("cursor is not one this API returned"))
            })
            .transpose()?;
        let rows = self
            .store()
            .search(&SearchQuery {
                user: caller.user_id.clone(),
                text: text.to_owned(),
                conversation,
                format,
                from: integer(params.from, "from")?,
                to: integer(params.to, "to")?,
                before_id,
                limit,
            })
            .await?;
        let next_cursor = (i64::try_from(rows.len()).unwrap_or(0) == limit)
            .then(|| rows.last().map(|row| row.id.to_string()))
            .flatten();
        let mut items: Vec<MessageJson> = rows.iter().map(MessageJson::from).collect();
        self.with_reactions(&mut items, &caller.user_id).await?;
        Ok(SearchPage { items, next_cursor })
    }
}
