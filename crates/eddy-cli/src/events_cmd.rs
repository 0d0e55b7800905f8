//! `eddy events ...` (the bus, under the prefix `events:`) and `eddy tail`
//! (a queue's new messages, read without consuming them).

use std::time::{Duration, SystemTime};

use clap::Subcommand;
use serde_json::{json, Map, Value};

use eddy::bus::{Bus, Envelope};
use eddy::{Eddy, EntryId, Queue};

use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::output::Output;

/// The prefix the bus lives under (the service runtime's default).
pub const DEFAULT_PREFIX: &str = eddy::bus::DEFAULT_PREFIX;

/// How often `tail` and `events tail` look for new entries.
const POLL: Duration = Duration::from_millis(100);
/// Entries read per look.
const PAGE: usize = 500;

/// `eddy events ...`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish an event: its type and its fields as a JSON object; prints
    /// the event id and the services it was delivered to.
    Publish {
        /// The event type, e.g. OrderCreatedEvent.
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The event's fields, a JSON object.
        #[arg(value_name = "JSON")]
        data: String,
        /// The publishing service (`source` in the envelope).
        #[arg(long, value_name = "SERVICE")]
        source: Option<String>,
        /// The flow this event belongs to (default: its own id).
        #[arg(long, value_name = "ID")]
        correlation_id: Option<String>,
    },
    /// The services an event type is delivered to; without TYPE, every
    /// route (services that take every type are listed under `*`).
    Routes {
        /// The event type.
        #[arg(value_name = "TYPE")]
        event_type: Option<String>,
    },
    /// Print events as they are published (from the bus's `all` log, which
    /// nobody consumes), until interrupted.
    Tail,
    /// Print the events published since a time ago (from the `all` log,
    /// which keeps ten minutes by default), oldest first.
    Replay {
        /// How far back: 30s, 10m, 1h.
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        since: Duration,
        /// At most this many events.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        count: usize,
    },
}

/// Run one `eddy events` command.
pub async fn run(mq: &Eddy, command: EventsCommand, out: &mut Output) -> CliResult {
    let bus = Bus::new(mq.clone()).await?;
    match command {
        EventsCommand::Publish {
            event_type,
            data,
            source,
            correlation_id,
        } => {
            let fields: Map<String, Value> = match serde_json::from_str(&data) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(CliError::new("the event must be a JSON object (`{...}`)")),
                Err(e) => return Err(CliError::new(format!("invalid JSON: {e}"))),
            };
            let mut env = Envelope::from_parts(&event_type, fields)?;
            env.source = source;
            env.correlation_id = correlation_id;
            let published = bus.publish_envelope(&env).await?;
            // On a Redis Cluster a relay (this process's bus runs one) fans
            // the event out just after the publish: wait for it, so that the
            // subscribers' queues hold the event once the command returns.
            // The event is in the durable log either way; any bus relays it.
            if let Err(e) = bus.relayed(std::time::Duration::from_secs(5)).await {
                tracing::warn!(error = %e, "published; the fan-out to the subscribers is still under way");
            }
            let to = if published.delivered_to.is_empty() {
                "no service subscribes to it".to_owned()
            } else {
                format!("delivered to {}", published.delivered_to.join(", "))
            };
            out.result(
                json!({ "event_id": published.event_id, "delivered_to": published.delivered_to }),
                &format!("{}: {to}", published.event_id),
            )?;
        }
        EventsCommand::Routes { event_type: None } => {
            let routes = bus.routes().await?;
            let human = if routes.is_empty() {
                "no routes: no service subscribes to anything yet".to_owned()
            } else {
                routes
                    .iter()
                    .map(|(t, s)| format!("{t} -> {}", s.join(", ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let machine: Vec<Value> = routes
                .iter()
                .map(|(t, s)| json!({ "event_type": t, "services": s }))
                .collect();
            out.result(json!({ "routes": machine }), &human)?;
        }
        EventsCommand::Routes {
            event_type: Some(event_type),
        } => {
            let services = bus.subscribers(&event_type).await?;
            let human = if services.is_empty() {
                format!("no service subscribes to {event_type}")
            } else {
                format!("{event_type} -> {}", services.join(", "))
            };
            out.result(
                json!({ "event_type": event_type, "services": services }),
                &human,
            )?;
        }
        EventsCommand::Tail => {
            let log = bus.queues().queue("all").await?;
            let from = EntryId::new(mq.engine().now_ms().await?, 0);
            follow(&log, from, out, |out, m| {
                let line = match Envelope::from_message(m) {
                    Ok(env) => Value::Object(env.to_json()).to_string(),
                    Err(_) => m.payload_json(&[]).get().to_owned(),
                };
                out.line(&line)
            })
            .await?;
        }
        EventsCommand::Replay { since, count } => {
            let from = SystemTime::now()
                .checked_sub(since)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            for env in bus.replay(from, count.max(1)).await? {
                out.line(&Value::Object(env.to_json()).to_string())?;
            }
        }
    }
    Ok(())
}

/// `eddy tail NAME`: print the queue's messages as they are sent, without
/// receiving them (no consumer, no delivery count, nothing pending).
pub async fn tail(mq: &Eddy, name: &str, since: Option<Duration>, out: &mut Output) -> CliResult {
    let queue = mq.queue(name).await?;
    let now = mq.engine().now_ms().await?;
    let back = since.map_or(0, |d| d.as_millis() as u64);
    let from = EntryId::new(now.saturating_sub(back), 0);
    follow(&queue, from, out, |out, m| out.message_line(m)).await
}

/// Print every entry of `queue` from `from` on as it arrives, until the
/// process is interrupted or stdout closes.
async fn follow(
    queue: &Queue,
    mut from: EntryId,
    out: &mut Output,
    mut print: impl FnMut(&mut Output, &eddy::Message) -> std::io::Result<()>,
) -> CliResult {
    loop {
        let page = queue.peek_from(from, PAGE).await?;
        for m in &page {
            print(out, m)?;
        }
        if let Some(last) = page.last() {
            from = last.id.next();
        }
        // A full page: more may be waiting already.
        if page.len() < PAGE {
            tokio::time::sleep(POLL).await;
        }
    }
}
