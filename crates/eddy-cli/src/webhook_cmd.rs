//! `eddy webhook send|listen|request`: LeanMQ's webhooks from the command
//! line (`eddy::webhook`), under the prefix `webhook:` unless --prefix says
//! otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use eddy::webhook::{normalize_path, queue_name, Webhook};
use eddy::{Eddy, Receive};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::output::Output;

/// The prefix of `eddy webhook` when --prefix is not given (LeanMQ's).
pub const DEFAULT_PREFIX: &str = eddy::webhook::DEFAULT_PREFIX;

/// `eddy webhook` help, after the options.
pub const WEBHOOK_HELP: &str = "\
A path maps to a queue as LeanMQ maps it: slashes stripped at both ends,
inner slashes and other characters that are not letters or digits turned
into `_` (/order/status/ -> queue order_status, stream webhook:order_status).
Python's LeanMQWebhook.send reaches `eddy webhook listen`, and `eddy webhook
send` reaches a Python @webhook.get handler.

Output:
  send      the stream id; with --json {\"id\",\"path\",\"queue\"}
  listen    one line per delivery as it arrives: ID  DELIVERIES  PATH  DATA;
            with --json one object per line:
            {\"id\",\"path\",\"data\",\"timestamp\",\"delivery_count\"}
            (data as a LeanMQ handler gets it, with `_leanmq`)
  request   the reply as JSON; with --json {\"reply\": VALUE}
  A request that gets no reply in time fails with `error: no reply ...`; one
  the handler rejected fails with the handler's reason (exit status 1).

listen acknowledges each delivery once it is printed. A request that reaches
listen is printed and acknowledged, not answered.";

/// `eddy webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Send a webhook to a path (LeanMQWebhook.send); prints its stream id.
    Send {
        /// The path, e.g. /order/status.
        path: String,
        /// The payload: a JSON object.
        #[arg(value_name = "JSON")]
        payload: String,
    },
    /// Print each webhook sent to a path and acknowledge it, until --count
    /// deliveries or SIGINT/SIGTERM.
    Listen {
        /// The path, e.g. /order/status.
        path: String,
        /// Stop after this many deliveries (default: until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// The consumer name in the path's group.
        #[arg(long, default_value = eddy::queue::DEFAULT_CONSUMER, value_name = "C")]
        consumer: String,
    },
    /// Send a request to a path and print the handler's reply.
    Request {
        /// The path, e.g. /order/status.
        path: String,
        /// The payload: a JSON object.
        #[arg(value_name = "JSON")]
        payload: String,
        /// How long to wait for the reply: seconds or 500ms, 2s, 1m.
        #[arg(long, default_value = "30", value_parser = parse_duration, value_name = "SECS")]
        timeout: Duration,
    },
}

/// How long one read waits, so a signal is noticed between reads (a read in
/// progress is never cancelled: what it delivers gets printed).
const LISTEN_BLOCK: Duration = Duration::from_millis(500);
/// A delivery a crashed `listen` printed but never acknowledged is shown
/// again after this long.
const RECLAIM_AFTER: Duration = Duration::from_secs(30);

/// Run `eddy webhook ...` on `mq` (opened with the webhook prefix).
pub async fn run(mq: &Eddy, command: WebhookCommand, out: &mut Output) -> CliResult {
    let webhook = Webhook::new(mq.clone());
    match command {
        WebhookCommand::Send { path, payload } => {
            let payload = parse_object(&payload)?;
            let id = webhook.send(&path, &payload).await?;
            out.result(
                json!({"id": id.to_string(), "path": normalize_path(&path), "queue": queue_name(&path)?}),
                &id.to_string(),
            )?;
        }
        WebhookCommand::Request {
            path,
            payload,
            timeout,
        } => {
            let payload = parse_object(&payload)?;
            let reply = webhook.request(&path, &payload, timeout).await;
            // Remove the reply queue whatever happened.
            let closed = webhook.close().await;
            let reply = reply?;
            closed?;
            out.result(
                json!({ "reply": reply }),
                &serde_json::to_string(&reply).unwrap_or_default(),
            )?;
        }
        WebhookCommand::Listen {
            path,
            count,
            consumer,
        } => listen(&webhook, &path, count, &consumer, out).await?,
    }
    Ok(())
}

fn parse_object(text: &str) -> CliResult<Value> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| CliError::new(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CliError::new(
            "the payload must be a JSON object, e.g. '{\"order_id\": 7}'",
        ));
    }
    Ok(value)
}

async fn listen(
    webhook: &Webhook,
    path: &str,
    count: Option<usize>,
    consumer: &str,
    out: &mut Output,
) -> CliResult {
    if count == Some(0) {
        return Err(CliError::new("--count must be at least 1"));
    }
    let normalized = normalize_path(path);
    // Created if missing: listening before anyone sends is normal.
    let queue = webhook.queue(path).await?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let mut remaining = count.unwrap_or(usize::MAX);
    while remaining > 0 && !stop.load(Ordering::SeqCst) {
        let batch = remaining.min(100);
        let mut deliveries = queue.claim_stale(consumer, RECLAIM_AFTER, batch).await?;
        if deliveries.is_empty() {
            let recv = Receive::new()
                .count(batch)
                .consumer(consumer)
                .block(LISTEN_BLOCK);
            deliveries = queue.receive(&recv).await?;
        }
        if deliveries.is_empty() {
            continue;
        }
        for d in &deliveries {
            // The payload as stored (key order, big integers as sent).
            let data = d.payload_json(&[]);
            let human = format!(
                "{}  {}  {}  {}",
                d.id,
                d.delivery_count,
                normalized,
                data.get()
            );
            out.result_of(
                &Delivered {
                    id: d.id.to_string(),
                    data: &data,
                    timestamp: d.timestamp,
                    delivery_count: d.delivery_count,
                    path: &normalized,
                },
                &human,
            )?;
        }
        // Acknowledged only once a reader of the pipe could see them.
        out.flush()?;
        let ids: Vec<_> = deliveries.iter().map(|d| d.id).collect();
        queue.ack(&ids).await?;
        remaining -= deliveries.len();
    }
    Ok(())
}

/// A delivery as `webhook listen --json` prints it.
#[derive(serde::Serialize)]
struct Delivered<'a> {
    id: String,
    data: &'a serde_json::value::RawValue,
    timestamp: f64,
    delivery_count: u64,
    path: &'a str,
}

/// Set `stop` on SIGINT or SIGTERM; `listen` finishes the batch in hand.
fn watch_signals(stop: Arc<AtomicBool>) -> CliResult {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_webhook_commands() {
        use clap::Parser;
        for args in [
            &["eddy", "webhook", "send", "/order/status", "{}"][..],
            &[
                "eddy", "--json", "webhook", "listen", "/a/b", "--count", "3",
            ],
            &[
                "eddy",
                "webhook",
                "listen",
                "a",
                "--consumer",
                "c1",
                "--prefix",
                "hooks:",
            ],
            &[
                "eddy",
                "webhook",
                "request",
                "/a",
                "{}",
                "--timeout",
                "500ms",
            ],
            &["eddy", "webhook", "request", "/a", "{}", "--timeout", "2"],
        ] {
            assert!(crate::cli::Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        for bad in [
            &["eddy", "webhook", "send", "/a"][..],
            &["eddy", "webhook", "listen"],
            &[
                "eddy",
                "webhook",
                "request",
                "/a",
                "{}",
                "--timeout",
                "soon",
            ],
        ] {
            assert!(crate::cli::Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payloads_must_be_objects() {
        assert!(parse_object("{\"a\": 1}").is_ok());
        assert!(parse_object("[1]").is_err());
        assert!(parse_object("{nope").is_err());
    }
}
