//! Frame order on the way in: a session hands its SENDs to the writer in the order the client
//! sent them, while the work before that (parsing, checks, lookups) runs for several frames at
//! once.
//!
//! Each pipelined frame holds a [`Turn`]. Its holder waits for the turn just before the one step
//! whose order matters (putting the message on the writer's queue) and gives it up right after,
//! which lets the next frame's holder take that step. A turn given up early (a send refused by a
//! check, a handler that has no ordered step) counts as taken, so a refusal never stalls the
//! frames behind it; but they still wait for every frame before the refused one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::util::lock;

/// One frame's place in its session's line. Dropping it lets the next frame take its step, once
/// every earlier turn is given up too.
#[derive(Debug)]
pub struct Turn {
    /// The line and this turn's number in it; none for a free turn.
    place: Option<(Arc<Line>, u64)>,
}

/// The state one session's turns share.
#[derive(Debug)]
struct Line {
    given_up: Mutex<GivenUp>,
    /// The number of the first turn not given up yet: turn `n` goes once this reaches `n`.
    next: watch::Sender<u64>,
}

/// Turns given up, as the line's front and those given up ahead of it.
#[derive(Debug, Default)]
struct GivenUp {
    front: u64,
    /// Turns given up while an earlier one was still held (a send refused by its checks).
    ahead: BTreeSet<u64>,
}

impl Line {
    fn give_up(&self, number: u64) {
        let mut given_up = lock(&self.given_up);
        if number != given_up.front {
            given_up.ahead.insert(number);
            return;
        }
        given_up.front += 1;
        while given_up.ahead.first() == Some(&given_up.front) {
            given_up.ahead.pop_first();
            given_up.front += 1;
        }
        self.next.send_replace(given_up.front);
    }
}

impl Turn {
    /// A turn that waits for nobody and nobody waits for: for work outside any line (a REST
    /// call, a frame handled on its own).
    pub fn free() -> Turn {
        Turn { place: None }
    }

    /// Waits until every earlier turn of the line has been given up.
    pub async fn wait(&mut self) {
        if let Some((line, number)) = &self.place {
            let mut next = line.next.subscribe();
            // The sender lives in the line this turn holds, so this cannot fail.
            let _ = next.wait_for(|next| *next >= *number).await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some((line, number)) = self.place.take() {
            line.give_up(number);
        }
    }
}

/// Hands out the turns of one line (one session), in order.
#[derive(Debug)]
pub struct TurnLine {
    line: Arc<Line>,
    handed_out: u64,
}

impl Default for TurnLine {
    fn default() -> TurnLine {
        TurnLine::new()
    }
}

impl TurnLine {
    /// A line with nobody in it.
    pub fn new() -> TurnLine {
        TurnLine {
            line: Arc::new(Line {
                given_up: Mutex::new(GivenUp::default()),
                next: watch::Sender::new(0),
            }),
            handed_out: 0,
        }
    }

    /// The next turn: it comes after every turn handed out before.
    pub fn next_turn(&mut self) -> Turn {
        let number = self.handed_out;
        self.handed_out += 1;
        Turn {
            place: Some((self.line.clone(), number)),
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
    async fn a_turn_given_up_early_does_not_let_the_next_pass_an_earlier_one() {
        let mut line = TurnLine::new();
        let mut first = line.next_turn();
        let second = line.next_turn();
        let mut third = line.next_turn();
        drop(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), third.wait())
                .await
                .is_err(),
            "the third waits for the first"
        );
        first.wait().await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), third.wait())
            .await
            .expect("then goes");
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
