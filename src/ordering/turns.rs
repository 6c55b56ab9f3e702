//! Frame order on the way in: a session hands its SENDs to the writer in the order the client
//! sent them, while the work before that (parsing, checks, lookups) runs for several frames at
//! once.
//!
//! Each pipelined frame holds a [`Turn`]. Its holder waits for the turn just before the one step
//! whose order matters (putting the message on the writer's queue) and gives it up right after,
//! which lets the next frame's holder take that step. A turn given up early (a send refused by a
//! check, a handler that has no ordered step) lets the next one go at once, so a refusal never
//! stalls the frames behind it. It is a ticket line of one-shot channels: nothing is shared but
//! the link between two neighbours.

use tokio::sync::oneshot;

/// One frame's place in its session's line. Dropping it lets the next frame take its step.
#[derive(Debug)]
pub struct Turn {
    /// Resolves (with a value or by being dropped) once the previous frame gave up its turn.
    after: Option<oneshot::Receiver<()>>,
    /// Dropped when this turn is given up; the next frame waits on it.
    _release: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// A turn that waits for nobody and nobody waits for: for work outside any line (a REST
    /// call, a frame handled on its own).
    pub fn free() -> Turn {
        Turn {
            after: None,
            _release: None,
        }
    }

    /// Waits until every earlier turn of the line has been given up. Returns at once when
    /// called again.
    pub async fn wait(&mut self) {
        if let Some(after) = self.after.take() {
            // An error only says the previous turn was dropped, which is the same signal.
            let _ = after.await;
        }
    }
}

/// Hands out the turns of one line (one session), in order.
#[derive(Debug, Default)]
pub struct TurnLine {
    /// The release side of the last turn handed out.
    last: Option<oneshot::Receiver<()>>,
}

impl TurnLine {
    /// A line with nobody in it.
    pub fn new() -> TurnLine {
        TurnLine::default()
    }

    /// The next turn: it comes after every turn handed out before.
    pub fn next_turn(&mut self) -> Turn {
        let (release, released) = oneshot::channel();
        Turn {
            after: self.last.replace(released),
            _release: Some(release),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn turns_are_taken_in_line_order_whatever_order_their_holders_reach_them() {
        let mut line = TurnLine::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // The first holders take longest to reach their step.
        for n in 0..8u64 {
            let mut turn = line.next_turn();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(40 - n * 5)).await;
                turn.wait().await;
                order.lock().unwrap().push(n);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_turn_given_up_early_lets_the_next_go() {
        let mut line = TurnLine::new();
        let first = line.next_turn();
        let mut second = line.next_turn();
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.wait())
            .await
            .expect("the second turn is not held up");
        let mut free = Turn::free();
        free.wait().await;
    }
}
