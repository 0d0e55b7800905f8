//! A progress line on stderr for long commands (`queue send -`, `dlq
//! requeue --all`): `sent 12000 messages`, redrawn in place at most four
//! times a second, and only when stderr is a terminal, so pipes and logs
//! never see it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(250);

pub struct Progress {
    on: bool,
    verb: &'static str,
    next: Instant,
    shown: bool,
}

impl Progress {
    /// A line that reads `VERB N messages`.
    pub fn new(verb: &'static str) -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            verb,
            next: Instant::now() + EVERY,
            shown: false,
        }
    }

    /// A line never shown (a caller that is not a command on a terminal).
    pub fn hidden(verb: &'static str) -> Self {
        Self {
            on: false,
            ..Self::new(verb)
        }
    }

    /// Show `n`, if the line is due for a redraw.
    pub fn show(&mut self, n: u64) {
        if !self.on || Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + EVERY;
        self.shown = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{} {n} messages", self.verb);
        let _ = err.flush();
    }

    /// Clear the line, before the command prints its result.
    pub fn done(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
