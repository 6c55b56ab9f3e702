//! `[limits]`: sizes and rates, per frame, per session and per user.

use serde::Deserialize;

use super::Rate;

/// `[limits]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest STOMP frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// The most header lines in one frame.
    pub max_headers: usize,
    /// The longest header line, in bytes.
    pub max_header_line_bytes: usize,
    /// How long a frame may take to arrive, from its first byte to its last.
    pub frame_timeout_ms: u64,
    /// Sessions one user may have open at once on one node.
    pub max_sessions_per_user: usize,
    /// A session's outbound queue, in bytes, before it is cut as a slow consumer.
    pub max_outbound_bytes: usize,
    /// SENDs one session may have under way (read, not yet answered) before it stops reading.
    pub max_inflight_sends: usize,
    /// Bytes of such SENDs, on the wire, before the session stops reading.
    pub max_inflight_bytes: usize,
    /// Recipients of one notification request (REST call, queue message).
    pub notification_max_users: usize,
    /// Unacknowledged deliveries (client-ack subscriptions of every kind) one session may hold
    /// before it is cut as a slow consumer.
    pub max_unacked: usize,
    /// The same bound on any one subscription.
    pub max_unacked_per_subscription: usize,
    /// Messages a generic `/queue/*` keeps while nobody consumes it.
    pub queue_max_messages: usize,
    /// Unacknowledged messages a `client` / `client-individual` queue subscriber may hold
    /// unless its SUBSCRIBE asks for fewer with `prefetch-count`.
    pub queue_prefetch: usize,
    /// Characters (not bytes) of a text message.
    pub text_max_chars: usize,
    /// Largest image upload, in bytes.
    pub image_max_bytes: u64,
    /// Largest upload of any other file, in bytes.
    pub file_max_bytes: u64,
    /// Messages one user may send (STOMP and REST together).
    pub send_rate: Rate,
    /// Messages one user may send to users who never replied to them.
    pub stranger_rate: Rate,
    /// Messages to a user who never replied, until they reply.
    pub stranger_before_reply: u32,
    /// Characters of a group's name.
    pub group_name_max_chars: usize,
    /// Characters of a group's announcement.
    pub group_announcement_max_chars: usize,
    /// Bytes of the JSON of a card's or a notification's `data`.
    pub card_data_max_bytes: usize,
    /// Typing signals one user may send; extra ones are dropped.
    pub typing_rate: Rate,
    /// Groups one user may create.
    pub group_create_rate: Rate,
    /// Invitation requests one user may make.
    pub invite_rate: Rate,
    /// Reports one user may file.
    pub report_rate: Rate,
    /// Private conversations one user may create over REST.
    pub conversation_create_rate: Rate,
    /// Contact requests one user may make.
    pub contact_request_rate: Rate,
    /// Nickname changes and mutes one user may make (each is pushed to a whole group).
    pub member_update_rate: Rate,
    /// Message edits one user may make.
    pub edit_rate: Rate,
    /// Reactions one user may add or take back.
    pub reaction_rate: Rate,
    /// Messages one user may pin or unpin.
    pub pin_rate: Rate,
    /// Messages one resumed subscription replays (newer ones first kept).
    pub max_replay: usize,
    /// Bytes of the bodies one resumed subscription replays.
    pub max_replay_bytes: usize,
    /// Replays (SUBSCRIBEs with `since-seq`) one user may ask for.
    pub replay_rate: Rate,
    /// Largest JSON body of a REST request, in bytes.
    pub json_max_bytes: usize,
    /// Uploads one user may make.
    pub upload_rate: Rate,
}
