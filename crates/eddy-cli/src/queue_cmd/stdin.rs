//! `eddy queue send NAME -`: one JSON object per stdin line, sent as it
//! comes, in atomic batches.
//!
//! A pipe may never end (`tail -f log | jq -c ... | eddy queue send q -`),
//! so lines are not collected first: a batch goes out once it holds 500
//! messages or 8 MB, or as soon as stdin pauses (100 ms without a line),
//! with at most four batches in flight. Memory stays at those batches
//! whatever the input's length. A bad line (not JSON, not an object,
//! too big, a reserved field) stops the run: every line before it is sent,
//! nothing from it on, and the error names the line and the count.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};

use eddy::{Eddy, Queue, SendOptions, Transaction};

use super::{json_error, payload};
use crate::error::{CliError, CliResult};
use crate::progress::Progress;

/// Messages per atomic append.
const BATCH_MESSAGES: usize = 500;
/// Encoded bytes per atomic append (a batch ends at whichever comes first),
/// so large messages do not make one huge script call.
const BATCH_BYTES: usize = 8 << 20;
/// Batches in flight at once: Redis pipelines them on one connection.
const BATCHES_IN_FLIGHT: usize = 4;
/// A batch that is not full goes out once stdin has been quiet this long.
const QUIET: Duration = Duration::from_millis(100);

/// Send every non-blank stdin line to `queue` with `opts`; returns how many
/// messages were sent.
pub(super) async fn send(mq: &Eddy, queue: &Queue, opts: &SendOptions) -> CliResult<u64> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut progress = Progress::new("sent");
    let mut batch = Batch::new(mq);
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut line_no = 0usize;
    // Why the run stopped early, if it did.
    let mut stop: Option<Stop> = None;
    let mut eof = false;
    while !eof && stop.is_none() {
        tokio::select! {
            biased;
            Some((n, result)) = in_flight.next(), if !in_flight.is_empty() => {
                settle(&mut sent, &mut stop, n, result);
                progress.show(sent);
            }
            next = next_line(&mut lines, !batch.is_empty()), if in_flight.len() < BATCHES_IN_FLIGHT => {
                match next {
                    Next::Quiet => in_flight.push(batch.take(mq).commit_counted()),
                    Next::End => eof = true,
                    Next::Failed(e) => {
                        stop = Some(Stop::line(format!("stdin line {}: {e}", line_no + 1)));
                    }
                    Next::Line(line) => {
                        line_no += 1;
                        match batch.add(queue, opts, &line, line_no) {
                            Ok(true) => in_flight.push(batch.take(mq).commit_counted()),
                            Ok(false) => {}
                            Err(e) => stop = Some(e),
                        }
                    }
                }
            }
        }
    }
    // What was read before the end (or before a bad line) goes out; after
    // a failed commit, nothing more does.
    let failed_commit = stop.as_ref().is_some_and(|e| e.is_commit);
    if !batch.is_empty() && !failed_commit {
        in_flight.push(batch.take(mq).commit_counted());
    }
    while let Some((n, result)) = in_flight.next().await {
        settle(&mut sent, &mut stop, n, result);
    }
    progress.done();
    match stop {
        None => Ok(sent),
        Some(e) => Err(CliError::new(format!(
            "{}; {sent} message{} before it {} sent, in whole batches of up to {BATCH_MESSAGES}, and nothing after",
            e.message,
            if sent == 1 { "" } else { "s" },
            if sent == 1 { "was" } else { "were" },
        ))),
    }
}

/// Why a run stopped: a bad line, unreadable stdin, or a failed commit.
struct Stop {
    message: String,
    is_commit: bool,
}

impl Stop {
    fn line(message: String) -> Self {
        Self {
            message,
            is_commit: false,
        }
    }
}

/// One commit's outcome.
fn settle(sent: &mut u64, stop: &mut Option<Stop>, n: usize, result: eddy::Result<()>) {
    match result {
        Ok(()) => *sent += n as u64,
        Err(e) => {
            stop.get_or_insert(Stop {
                message: e.message().to_owned(),
                is_commit: true,
            });
        }
    }
}

enum Next {
    Line(String),
    /// No line for [`QUIET`] while a batch waits.
    Quiet,
    End,
    Failed(std::io::Error),
}

/// The next line; with `waiting`, [`Next::Quiet`] after [`QUIET`] without
/// one. `Lines::next_line` is cancel-safe: a line half read when the
/// timeout (or the other branch of the caller's `select!`) wins is kept for
/// the next call.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    waiting: bool,
) -> Next {
    let read = async {
        match lines.next_line().await {
            Ok(Some(line)) => Next::Line(line),
            Ok(None) => Next::End,
            Err(e) => Next::Failed(e),
        }
    };
    if !waiting {
        return read.await;
    }
    tokio::time::timeout(QUIET, read)
        .await
        .unwrap_or(Next::Quiet)
}

/// The batch being filled.
struct Batch {
    tx: Transaction,
    bytes: usize,
}

impl Batch {
    fn new(mq: &Eddy) -> Self {
        Self {
            tx: mq.transaction(),
            bytes: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Check and stage `line`; `Ok(true)` when the batch is full.
    fn add(
        &mut self,
        queue: &Queue,
        opts: &SendOptions,
        line: &str,
        line_no: usize,
    ) -> Result<bool, Stop> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Ok(false);
        }
        let payload = payload(line)
            .map_err(|e| Stop::line(format!("line {line_no}: invalid JSON: {}", json_error(&e))))?;
        self.tx
            .send_with(queue, &payload, opts)
            .map_err(|e| Stop::line(format!("line {line_no}: {}", e.message())))?;
        self.bytes += line.len();
        Ok(self.tx.len() >= BATCH_MESSAGES || self.bytes >= BATCH_BYTES)
    }

    fn take(&mut self, mq: &Eddy) -> Transaction {
        self.bytes = 0;
        std::mem::replace(&mut self.tx, mq.transaction())
    }
}

/// A transaction's commit with its size.
trait CommitCounted {
    fn commit_counted(
        self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (usize, eddy::Result<()>)> + Send>>;
}

impl CommitCounted for Transaction {
    fn commit_counted(
        self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (usize, eddy::Result<()>)> + Send>>
    {
        let n = self.len();
        Box::pin(async move { (n, self.commit().await.map(|_| ())) })
    }
}
