//! `eddy queue ...`

mod follow;
mod stdin;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use eddy::{Eddy, Receive, SendOptions};

use crate::cli::{parse_ids, QueueCommand, ReceiveArgs, SendArgs};
use crate::error::{CliError, CliResult};
use crate::output::Output;

/// How `queue list` names a dead-letter queue: `orders:dlq`.
const DLQ_SUFFIX: &str = ":dlq";

/// Run one `eddy queue` command.
pub async fn run(mq: &Eddy, command: QueueCommand, out: &mut Output) -> CliResult {
    match command {
        QueueCommand::Create { name } => {
            let (queue, dlq) = mq.create_queue_pair(&name).await?;
            out.result(
                json!({ "created": queue.name(), "dlq": dlq.name() }),
                &format!(
                    "created queue `{}` with dead-letter queue `{}`",
                    queue.name(),
                    dlq.name()
                ),
            )?;
        }
        QueueCommand::Send(args) if args.message == "-" => {
            if args.id.is_some() {
                return Err(CliError::new(
                    "--id names one message; it cannot be used with `-` (stdin), whose messages each get their own",
                ));
            }
            // Looked up first: an unknown queue fails before waiting for stdin.
            let queue = mq.queue(&args.name).await?;
            let count = stdin::send(mq, &queue, &send_options(&args)).await?;
            out.result(
                json!({ "count": count }),
                &format!("sent {count} message{}", plural(count)),
            )?;
        }
        QueueCommand::Send(args) => send_one(mq, args, out).await?,
        QueueCommand::Receive(args) => receive(mq, args, out).await?,
        QueueCommand::Ack { name, ids } => {
            let ids = parse_ids(&ids)?;
            let n = mq.queue(&name).await?.ack(&ids).await?;
            out.result(
                json!({ "acknowledged": n }),
                &format!("acknowledged {n} message{}", plural(n)),
            )?;
        }
        QueueCommand::DeadLetter { name, ids, reason } => {
            let ids = parse_ids(&ids)?;
            let queue = mq.queue(&name).await?;
            let n = queue.dead_letter(&ids, &reason).await?;
            out.result(
                json!({ "dead_lettered": n }),
                &format!("moved {n} message{} to `{name}:dlq`", plural(n)),
            )?;
        }
        QueueCommand::Peek { name, count } => {
            let messages = mq.queue(&name).await?.peek(count).await?;
            out.messages(&messages)?;
        }
        QueueCommand::Info { name } => {
            let queue = match name.strip_suffix(DLQ_SUFFIX) {
                Some(main) => crate::dlq_cmd::dead_letter_queue(mq, main).await?,
                None => mq.queue(&name).await?,
            };
            let info = queue.info().await?;
            out.info(&info)?;
        }
        QueueCommand::List => {
            let queues = mq.list_queues().await?;
            out.queues(&queues)?;
            // Like `ls`: everything readable is listed, and the exit status
            // says that something was not.
            let broken: Vec<&str> = queues
                .iter()
                .filter(|q| q.error.is_some())
                .map(|q| q.name.as_str())
                .collect();
            if !broken.is_empty() {
                out.flush()?;
                return Err(CliError::new(format!(
                    "{} queue{} could not be read ({}); see the ERROR column or the `error` field",
                    broken.len(),
                    plural(broken.len() as u64),
                    broken.join(", ")
                )));
            }
        }
        QueueCommand::Trim {
            name,
            older_than,
            keep,
        } => {
            let retention = eddy::queue::Retention::new(older_than, keep);
            let n = mq.queue(&name).await?.apply_retention(retention).await?;
            let which = match (older_than, keep) {
                (Some(age), None) => format!("older than {}", crate::duration::show_duration(age)),
                (None, Some(k)) => format!("beyond the newest {k}"),
                (Some(age), Some(k)) => format!(
                    "older than {} or beyond the newest {k}",
                    crate::duration::show_duration(age)
                ),
                (None, None) => String::new(),
            };
            out.result(
                json!({ "trimmed": n }),
                &format!(
                    "removed {n} acknowledged message{} {which} from `{name}`",
                    plural(n),
                ),
            )?;
        }
        QueueCommand::Sweep { name, idle } => {
            let queue = mq.queue(&name).await?;
            let expired = queue.sweep_expired().await?;
            let consumers = queue.forget_idle_consumers(idle).await?;
            let n = consumers.len() as u64;
            out.result(
                json!({ "expired": expired, "consumers_removed": consumers }),
                &format!(
                    "removed {expired} expired message{} and {n} idle consumer{} from `{name}`{}",
                    plural(expired),
                    plural(n),
                    if consumers.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", consumers.join(", "))
                    }
                ),
            )?;
        }
        QueueCommand::Purge { name } => {
            let n = mq.queue(&name).await?.purge().await?;
            out.result(
                json!({ "purged": n }),
                &format!("purged {n} message{} from `{name}`", plural(n)),
            )?;
        }
        QueueCommand::Delete { name, keep_dlq } => {
            mq.delete_queue(&name, keep_dlq).await?;
            let human = if keep_dlq {
                format!("deleted queue `{name}` (kept `{name}:dlq`)")
            } else {
                format!("deleted queue `{name}` and `{name}:dlq`")
            };
            out.result(json!({ "deleted": name, "dlq_deleted": !keep_dlq }), &human)?;
        }
    }
    Ok(())
}

async fn send_one(mq: &Eddy, args: SendArgs, out: &mut Output) -> CliResult {
    let payload = payload(&args.message)
        .map_err(|e| CliError::new(format!("invalid JSON: {}", json_error(&e))))?;
    let mut opts = send_options(&args);
    if let Some(id) = args.id {
        opts = opts.message_id(id);
    }
    let queue = mq.queue(&args.name).await?;
    match queue.send_with(&payload, &opts).await? {
        Some(id) => out.result(json!({ "id": id.to_string() }), &id.to_string())?,
        None => out.result(
            json!({ "id": null, "delayed": true }),
            "delayed: the message gets its id when it becomes visible",
        )?,
    }
    Ok(())
}

/// `--ttl` and `--delay`, for one message or for each of stdin's.
fn send_options(args: &SendArgs) -> SendOptions {
    let mut opts = SendOptions::new();
    if let Some(ttl) = args.ttl {
        opts = opts.ttl(ttl);
    }
    if let Some(delay) = args.delay {
        opts = opts.delay(delay);
    }
    opts
}

async fn receive(mq: &Eddy, args: ReceiveArgs, out: &mut Output) -> CliResult {
    if args.follow {
        return follow::run(mq, args, out).await;
    }
    let consumer = args
        .consumer
        .unwrap_or_else(|| eddy::queue::DEFAULT_CONSUMER.to_owned());
    let mut opts = Receive::new()
        .count(args.count.unwrap_or(1))
        .consumer(consumer);
    if let Some(block) = args.block {
        opts = opts.block(block);
    }
    let queue = mq.queue(&args.name).await?;
    let messages = queue.receive(&opts).await?;
    out.messages(&messages)?;
    if args.ack && !messages.is_empty() {
        // Printed first: an interrupted run leaves them pending, never lost.
        out.flush()?;
        let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
        queue.ack(&ids).await?;
    }
    Ok(())
}

/// A payload as given: checked to be JSON that reads as a `Value` (a
/// number in range, no lone surrogate escape), then sent as it is written,
/// so its key order and big integers reach the queue unchanged. Only JSON's
/// own whitespace is trimmed around it: a vertical tab or a no-break space
/// before the `{` is not JSON, so it is refused rather than cut off.
fn payload(text: &str) -> Result<Box<RawValue>, serde_json::Error> {
    let text = text.trim_matches([' ', '\t', '\r', '\n']);
    serde_json::from_str::<Value>(text)?;
    RawValue::from_string(text.to_owned())
}

/// A serde_json error without its "at line 1 column N" (the input is one
/// line), with the column kept.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(msg) => format!("{msg} at column {}", e.column()),
        None => text,
    }
}

fn plural<N: TryInto<u64>>(n: N) -> &'static str {
    if n.try_into().is_ok_and(|n| n == 1) {
        ""
    } else {
        "s"
    }
}
