//! `eddy dlq ...`

use serde_json::json;

use eddy::{Eddy, EntryId, ErrorKind, Message, Queue};

use crate::cli::{parse_ids, DlqCommand};
use crate::error::{CliError, CliResult};
use crate::output::Output;
use crate::progress::Progress;

/// Run one `eddy dlq` command.
pub async fn run(mq: &Eddy, command: DlqCommand, out: &mut Output) -> CliResult {
    match command {
        DlqCommand::List { name, count } => {
            let messages = dead_letter_queue(mq, &name).await?.peek(count).await?;
            out.dead_letters(&messages)?;
        }
        DlqCommand::Requeue {
            name,
            ids,
            all,
            reason,
            limit,
            dry_run,
        } => {
            // Checked before the DLQ is even looked up: a typo changes nothing.
            let ids = parse_ids(&ids)?;
            let dlq = dead_letter_queue(mq, &name).await?;
            let pick = Pick {
                reason: reason.as_deref(),
                limit: limit.unwrap_or(usize::MAX),
                dry_run,
                progress: true,
            };
            let everything = pick.reason.is_none() && pick.limit == usize::MAX && !dry_run;
            let n = if all && everything {
                dlq.requeue_all().await?
            } else if all {
                requeue_picked(&dlq, &pick).await?
            } else {
                dlq.requeue(&ids).await?
            };
            let s = if n == 1 { "" } else { "s" };
            if dry_run {
                out.result(
                    json!({ "would_requeue": n }),
                    &format!("would requeue {n} message{s} to `{name}` (dry run: nothing moved)"),
                )?;
            } else {
                out.result(
                    json!({ "requeued": n }),
                    &format!("requeued {n} message{s} to `{name}`"),
                )?;
            }
        }
        DlqCommand::Purge { name } => {
            let n = dead_letter_queue(mq, &name).await?.purge().await?;
            let s = if n == 1 { "" } else { "s" };
            out.result(
                json!({ "purged": n }),
                &format!("purged {n} message{s} from `{name}:dlq`"),
            )?;
        }
    }
    Ok(())
}

/// Which dead-letter messages `dlq requeue --all` (and the dashboard's
/// requeue by reason) moves.
pub struct Pick<'a> {
    /// Only those whose last failure's reason contains this.
    pub reason: Option<&'a str>,
    /// At most this many, oldest first.
    pub limit: usize,
    /// Count them, move nothing.
    pub dry_run: bool,
    /// Show a progress line on stderr (when it is a terminal).
    pub progress: bool,
}

impl Pick<'_> {
    /// Whether `m` is picked by its reason: its last failure's reason
    /// contains [`Pick::reason`] (every message when there is none).
    pub fn picks(&self, m: &Message) -> bool {
        self.reason
            .is_none_or(|text| m.failures().last().is_some_and(|f| f.reason.contains(text)))
    }
}

/// DLQ messages read and moved per step.
const PAGE: usize = 500;

/// Requeue (or with `dry_run` count) the messages of `dlq` that `pick`
/// picks, a page at a time from the oldest, with a progress line on a
/// terminal. Returns how many.
pub async fn requeue_picked(dlq: &Queue, pick: &Pick<'_>) -> CliResult<u64> {
    let verb = if pick.dry_run { "counted" } else { "requeued" };
    let mut progress = if pick.progress {
        Progress::new(verb)
    } else {
        Progress::hidden(verb)
    };
    let mut from = EntryId::MIN;
    let mut total = 0u64;
    loop {
        let left = pick.limit.saturating_sub(total as usize);
        if left == 0 {
            break;
        }
        let page = dlq.peek_from(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.id.next();
        let chosen: Vec<EntryId> = page
            .iter()
            .filter(|m| pick.picks(m))
            .map(|m| m.id)
            .take(left)
            .collect();
        total += if pick.dry_run || chosen.is_empty() {
            chosen.len() as u64
        } else {
            dlq.requeue(&chosen).await?
        };
        progress.show(total);
        if page.len() < PAGE {
            break;
        }
    }
    progress.done();
    Ok(total)
}

/// The dead-letter queue of queue `name`, with a not-found message that
/// names the command to run (`NAME:dlq` is not itself a creatable name).
pub async fn dead_letter_queue(mq: &Eddy, name: &str) -> CliResult<Queue> {
    match mq.dead_letter_queue(name).await {
        Err(e) if e.kind() == ErrorKind::QueueNotFound => Err(CliError::new(format!(
            "queue `{name}` has no dead-letter queue: create the queue first (eddy queue create {name})"
        ))),
        other => Ok(other?),
    }
}
