//! `eddy dlq ...`

use serde_json::json;

use eddy::{Eddy, ErrorKind, Queue};

use crate::cli::{parse_ids, DlqCommand};
use crate::error::{CliError, CliResult};
use crate::output::Output;

/// Run one `eddy dlq` command.
pub async fn run(mq: &Eddy, command: DlqCommand, out: &mut Output) -> CliResult {
    match command {
        DlqCommand::List { name, count } => {
            let messages = dead_letter_queue(mq, &name).await?.peek(count).await?;
            out.dead_letters(&messages)?;
        }
        DlqCommand::Requeue { name, ids, all } => {
            // Checked before the DLQ is even looked up: a typo changes nothing.
            let ids = parse_ids(&ids)?;
            let dlq = dead_letter_queue(mq, &name).await?;
            let n = if all {
                dlq.requeue_all().await?
            } else {
                dlq.requeue(&ids).await?
            };
            let s = if n == 1 { "" } else { "s" };
            out.result(
                json!({ "requeued": n }),
                &format!("requeued {n} message{s} to `{name}`"),
            )?;
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
