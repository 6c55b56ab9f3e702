//! Seq order on the way out: subscribers see a conversation's messages in seq order, whichever
//! node stored them and however the tasks pushing them are scheduled.
//!
//! Two orders are kept, because messages can overtake each other in two places:
//!
//! - [`PushOrder`] ([`pushes`]), on the node that stored the messages. The store's writer
//!   commits concurrent senders' messages in one batch and answers them together; each sender's
//!   task then pushes its own message, and those tasks race. So the writer registers every
//!   committed seq before it answers, and each push is released through the push order, which
//!   runs one conversation's pushes in seq order. It orders closures of the layer that pushes
//!   (the IM layer), by conversation id, for private and group chats alike.
//! - [`TopicSequencer`] ([`sequencer`]), on every node that receives group publications from the
//!   others. Two nodes can store messages of one group at once; each serves its own sessions at
//!   once, and the other node's copy arrives through RabbitMQ a moment later. The hub offers
//!   every sequenced topic publication to the sequencer, which holds one ahead of the next
//!   expected seq until the gap fills (or briefly, then skips it).
//!
//! The first order is exact and local (it knows every seq that was committed); the second is
//! best effort across nodes (it only sees what arrives, so it must give up on a gap). A group
//! message stored here passes through both: the push order releases its push, and the hub's
//! sequencer keeps it in line with the copies arriving from other nodes.
//!
//! A third order is that of a session's frames on the way in: [`Turn`] ([`turns`]) lets a
//! session check several SENDs at once and still hand them to the writer in frame order.
//!
//! This module knows nothing of the store, the IM layer, the hub or sessions: it orders items
//! by key and seq, and those layers use it.

pub mod pushes;
pub mod sequencer;
pub mod turns;

pub use pushes::PushOrder;
pub use sequencer::{HOLD, TopicSequencer};
pub use turns::{Turn, TurnLine};
