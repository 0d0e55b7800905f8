//! The command line: global options and one subcommand tree per group.

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::logging::LogFormat;

const OUTPUT_HELP: &str = "\
Output:
  By default output is for people: aligned tables for `queue list` and
  `queue info`; for messages one row each with the stream id, the delivery
  count, the send time (UTC) and the data as JSON (`receive --follow`
  prints each row as it arrives, unaligned); `dlq list` adds each
  failure's time and reason under its message.

  With --json every command prints machine output on stdout:
    messages (receive, peek)  one object per line:
                              {\"id\",\"data\",\"timestamp\",\"delivery_count\"}
    receive --follow          the same, one line per message as it arrives
    dlq list                  the same, plus \"failures\": [{\"timestamp\",\"reason\"}]
    queue list                one queue object per line (as queue info)
    queue info                {\"name\",\"stream\",\"is_dlq\",\"consumer_group\",\"length\",
                              \"pending\",\"lag\",\"lag_estimated\",\"delayed\",\"consumers\",
                              \"oldest_pending_idle_ms\",\"oldest_pending_age_ms\",\"created_at\",
                              \"sent_total\",\"delivered_total\"}
    queue create              {\"created\": NAME, \"dlq\": \"NAME:dlq\"}
    queue send NAME JSON      {\"id\": ID} ({\"id\": null, \"delayed\": true} with --delay)
    queue send NAME -         {\"count\": N}
    queue ack                 {\"acknowledged\": N}
    queue trim                {\"trimmed\": N}
    queue sweep               {\"expired\": N, \"consumers_removed\": [NAME...]}
    queue dead-letter         {\"dead_lettered\": N}
    queue purge, dlq purge    {\"purged\": N}
    queue delete              {\"deleted\": NAME, \"dlq_deleted\": BOOL}
    dlq requeue               {\"requeued\": N} ({\"would_requeue\": N} with --dry-run)
  Timestamps are float seconds since the Unix epoch.

Errors:
  One line `error: <message>` on stderr and exit status 1 (2 for usage
  errors); with --json that line is {\"error\": \"<message>\"}. Ids and JSON are checked before anything is sent: a bad input
  changes nothing (`queue send NAME -` sends stdin as it comes: a bad line
  stops it, and the lines before it are sent).

Environment:
  EDDY_URL   default for --url
  RUST_LOG   log filter for stderr (default: warn, and error for the redis crate)";

/// Durable queues with dead-letter queues on Redis Streams (LeanMQ 0.2
/// compatible).
#[derive(Debug, Parser)]
#[command(name = "eddy", version, after_long_help = OUTPUT_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where the queues live: redis://host:port/db, rediss://host:port/db,
    /// redis+unix:///path/to.sock, redis+cluster://host:port[,host:port...]
    /// (a Redis Cluster by its seed nodes; rediss+cluster:// for TLS),
    /// redis+sentinel://host:port[,host:port...]/MASTER[/DB] (the master
    /// that Sentinels name, followed through failovers; rediss+sentinel://
    /// for TLS), or memory://.
    ///
    /// memory:// is the embedded engine: it lives inside one process, so with
    /// the CLI every invocation starts empty (useful only to try commands).
    #[arg(
        long,
        global = true,
        env = "EDDY_URL",
        hide_env_values = true,
        default_value = "memory://",
        value_name = "URL"
    )]
    pub url: String,

    /// The key prefix of the queues [default: mq: (LeanMQ's); for `eddy
    /// webhook`, webhook: (LeanMQ's webhook prefix)].
    #[arg(long, global = true, value_name = "P")]
    pub prefix: Option<String>,

    /// Print machine-readable JSON (see "Output" in --help).
    #[arg(long, global = true)]
    pub json: bool,

    /// How log lines on stderr are written: text, or one JSON object per
    /// line. `RUST_LOG` chooses which (default `warn,redis=error`).
    #[arg(
        long,
        global = true,
        env = "EDDY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// The largest encoded message accepted (and read without moving it to
    /// the dead-letter queue).
    #[arg(long, global = true, default_value_t = 1 << 20, value_name = "N",
          value_parser = parse_payload_bytes, allow_negative_numbers = true)]
    pub max_payload_bytes: usize,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, send to, receive from and inspect queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Inspect, requeue and purge a queue's dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Print a queue's messages as they are sent, without receiving them
    /// (no consumer joins, nothing becomes pending), until interrupted.
    Tail {
        /// The queue name.
        name: String,
        /// Start this far back instead of now: 30s, 10m.
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        since: Option<Duration>,
    },
    /// A live view of every queue: ready, unacknowledged, dead-lettered,
    /// delayed, consumers, and how fast the backlog and the DLQ grow,
    /// refreshed in place (with --json or when stdout is not a terminal,
    /// one snapshot per refresh), until interrupted.
    Top {
        /// Time between refreshes: 500ms, 1s, 5s.
        #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
        interval: Duration,
        /// Print one snapshot and exit.
        #[arg(long)]
        once: bool,
    },
    /// Publish events, see routes, follow and replay the bus (under the
    /// prefix events:).
    #[command(subcommand)]
    Events(crate::events_cmd::EventsCommand),
    /// Print a completion script for a shell: bash, zsh, fish, elvish,
    /// powershell (e.g. `eddy completions bash > /etc/bash_completion.d/eddy`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Send webhooks to paths, listen on a path, make requests (LeanMQ's
    /// webhooks, under the prefix webhook:).
    #[command(subcommand, after_long_help = crate::webhook_cmd::WEBHOOK_HELP)]
    Webhook(crate::webhook_cmd::WebhookCommand),
    /// Run the seed's shop end to end: place orders, pay, ship, notify.
    #[command(after_long_help = crate::demo_cmd::DEMO_HELP)]
    Demo(crate::demo_cmd::DemoArgs),
    /// Run one of the shop's services in this process, on Redis
    /// (order-service with an HTTP API).
    #[command(subcommand, after_long_help = crate::shop_cmd::SHOP_HELP)]
    Shop(crate::shop_cmd::ShopCommand),
    /// Measure throughput and latency next to a raw Redis baseline
    /// (queue, bus, rpc, latency).
    #[command(after_long_help = crate::bench_cmd::BENCH_HELP)]
    Bench(crate::bench_cmd::BenchArgs),
    /// Serve a web UI of the queues (counts, consumers, a backlog chart),
    /// their dead-letter queues (browse, search, requeue, delete) and the
    /// bus's routes, with its JSON API and /metrics, until interrupted.
    #[command(after_long_help = crate::dashboard::DASHBOARD_HELP)]
    Dashboard(crate::dashboard::DashboardArgs),
}

/// `eddy queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue and its dead-letter queue (does nothing if they exist).
    Create {
        /// The queue name: 1 to 200 characters from A-Z a-z 0-9 _ - . :
        name: String,
    },
    /// Send a message; prints its stream id.
    ///
    /// With `-` instead of JSON, reads one JSON object per line from stdin
    /// (blank lines are skipped) and sends them as they come, in atomic
    /// batches (500 messages, or fewer once stdin pauses for 100 ms), then
    /// prints the count; a pipe that never ends keeps sending, in bounded
    /// memory, with a progress line when stderr is a terminal. --ttl and
    /// --delay apply to every line. A bad line stops it: the lines before
    /// it are sent, nothing from it on, and the error says how many.
    Send(SendArgs),
    /// Receive new messages for a consumer; they stay pending until
    /// acknowledged (or use --ack). With --follow --ack, keep consuming until
    /// interrupted.
    ///
    /// --follow runs eddy's consumer loop until SIGINT or SIGTERM: it prints
    /// each message as it arrives (one line each, flushed; with --json one
    /// object per line) and acknowledges it once printed. Messages that
    /// another consumer took and did not acknowledge within the visibility
    /// timeout (it crashed or hung) are taken over and printed here, with
    /// their delivery count raised. On SIGINT/SIGTERM it stops reading,
    /// prints and acknowledges what it already holds, and exits 0; a second
    /// signal exits at once (status 130), leaving unacknowledged messages
    /// pending for another consumer. A message printed but not yet
    /// acknowledged when the process dies is delivered again: expect
    /// duplicates (same `id`), never gaps.
    ///
    /// --follow requires --ack: a follower that never acknowledged would see
    /// every message taken back after the visibility timeout and delivered
    /// again, over and over.
    Receive(ReceiveArgs),
    /// Acknowledge messages; prints how many were pending.
    Ack {
        /// The queue name.
        name: String,
        /// Stream ids, e.g. 1700000000000-0.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Move messages to the dead-letter queue with a reason.
    DeadLetter {
        /// The queue name.
        name: String,
        /// Stream ids, e.g. 1700000000000-0.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Why the messages failed (recorded in `_failures`).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Show messages from the head of the queue without delivering them.
    Peek {
        /// The queue name.
        name: String,
        /// At most this many messages (1 to 1000000).
        #[arg(long, default_value_t = 10, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
        count: usize,
    },
    /// Show a queue's length, pending, lag, delayed and consumers.
    ///
    /// `lag` counts messages not yet delivered; `~N` (and `lag_estimated`
    /// with --json) marks an estimate: on Redis, once a message was deleted
    /// from the stream (dead-lettered, expired) and more than 100 wait,
    /// counting exactly would read them all, so `info` costs the same
    /// whatever the backlog and gives the stream's counters instead.
    /// `pending` counts messages delivered and not yet acknowledged;
    /// `oldest pending idle` is how long ago the oldest of them (by id) was
    /// last delivered: past the consumers' visibility timeout it is due to
    /// be taken over. Each consumer's IDLE is the time since it last read: a
    /// running `receive --follow` reads at least every second, so a long
    /// idle with messages pending means that consumer is gone and its
    /// messages wait for the visibility timeout.
    Info {
        /// The queue name, or `NAME:dlq` for its dead-letter queue (as
        /// `queue list` shows it).
        name: String,
    },
    /// List every queue and dead-letter queue under the prefix.
    List,
    /// Remove acknowledged history older than DUR from a queue: messages
    /// its consumers have received and acknowledged. Never one that is
    /// pending or not yet delivered; prints how many were removed.
    ///
    /// Consumer loops (`receive --follow`, services, webhooks) trim their
    /// queue as they go; this is for queues used otherwise.
    Trim {
        /// The queue name.
        name: String,
        /// Keep acknowledged messages younger than this: 0s, 500ms, 2s, 1m, 1h.
        #[arg(long, value_parser = parse_duration, value_name = "DUR", required_unless_present = "keep")]
        older_than: Option<Duration>,
        /// Keep at most the N newest acknowledged messages (with
        /// --older-than, whichever removes more wins).
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
    },
    /// Remove a queue's expired messages (TTL passed) and the consumers that
    /// hold nothing and have not read for --idle (processes that ended);
    /// prints both counts.
    Sweep {
        /// The queue name.
        name: String,
        /// Remove consumers idle this long that hold no message (default 1h).
        #[arg(long, value_parser = parse_duration, value_name = "DUR", default_value = "1h")]
        idle: Duration,
    },
    /// Remove every message from a queue (not from its dead-letter queue).
    Purge {
        /// The queue name.
        name: String,
    },
    /// Delete a queue with its messages, and its dead-letter queue.
    Delete {
        /// The queue name.
        name: String,
        /// Keep the dead-letter queue and its messages.
        #[arg(long)]
        keep_dlq: bool,
    },
}

/// `eddy queue send`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The queue name.
    pub name: String,
    /// The message: a JSON object, or `-` to read one object per stdin line.
    #[arg(value_name = "JSON")]
    pub message: String,
    /// Remove the message unread after this long: seconds (0.5) or 500ms,
    /// 2s, 1m, 1h.
    #[arg(long, value_parser = parse_duration, allow_negative_numbers = true, value_name = "SECS")]
    pub ttl: Option<Duration>,
    /// Deliver no earlier than this long from now: seconds or 500ms, 2s, 1m.
    #[arg(long, value_parser = parse_duration, allow_negative_numbers = true, value_name = "SECS")]
    pub delay: Option<Duration>,
    /// The message id stored in `_metadata.id` (a UUID if not given).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// `eddy queue receive`
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The queue name.
    pub name: String,
    /// At most this many messages (1 to 1000000) [default: 1]. With
    /// --follow: how many are read at once [default: 100]; they are printed
    /// and acknowledged one at a time, in the order they were received.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub count: Option<usize>,
    /// Wait up to this long for the first message: seconds or 500ms, 2s, 1m.
    #[arg(long, value_parser = parse_duration, allow_negative_numbers = true, value_name = "SECS", conflicts_with = "follow")]
    pub block: Option<Duration>,
    /// The consumer name [default: `default-consumer`; with --follow a name
    /// unique to the process, `host-pid-xxxx`].
    #[arg(long, value_name = "C")]
    pub consumer: Option<String>,
    /// Acknowledge the messages once printed.
    #[arg(long)]
    pub ack: bool,
    /// Keep receiving until SIGINT/SIGTERM (requires --ack; see above).
    #[arg(long, requires = "ack")]
    pub follow: bool,
    /// With --follow: a message another consumer has held unacknowledged this
    /// long is taken over (500ms, 2s, 1m; default 30s). Also how long this
    /// process may stay silent before others take its messages.
    #[arg(long, value_parser = parse_duration, value_name = "DUR", requires = "follow")]
    pub visibility_timeout: Option<Duration>,
    /// With --follow: keep acknowledged messages on the queue this long,
    /// trimmed as it goes (default 1m; 0s keeps none).
    #[arg(long, value_parser = parse_duration, value_name = "DUR", requires = "follow")]
    pub history: Option<Duration>,
    /// With --follow: also keep at most N acknowledged messages, however
    /// young (0 keeps none).
    #[arg(long, value_name = "N", requires = "follow")]
    pub history_length: Option<u64>,
}

/// `eddy dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the dead-letter queue's messages with their failure reasons.
    List {
        /// The queue name (not `NAME:dlq`).
        name: String,
        /// At most this many messages (1 to 1000000).
        #[arg(long, default_value_t = 10, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
        count: usize,
    },
    /// Move messages back to the queue (recorded in `_requeues`).
    #[command(
        group(ArgGroup::new("which").required(true).args(["ids", "all"])),
        override_usage = "eddy dlq requeue [OPTIONS] <NAME> (<ID>... | --all)"
    )]
    Requeue {
        /// The queue name (not `NAME:dlq`).
        name: String,
        /// Stream ids of dead-letter queue messages.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// Requeue every message in the dead-letter queue (or every one that
        /// --reason picks, up to --limit).
        #[arg(long)]
        all: bool,
        /// With --all: only messages whose last failure's reason contains
        /// TEXT.
        #[arg(long, value_name = "TEXT", requires = "all")]
        reason: Option<String>,
        /// With --all: at most N messages, oldest first.
        #[arg(long, value_name = "N", requires = "all", value_parser = parse_count, allow_negative_numbers = true)]
        limit: Option<usize>,
        /// With --all: count what would be requeued, and move nothing.
        #[arg(long, requires = "all")]
        dry_run: bool,
    },
    /// Remove every message from the dead-letter queue.
    Purge {
        /// The queue name (not `NAME:dlq`).
        name: String,
    },
}

/// The largest `--count`: far below what Redis parses (a signed 64-bit
/// count), and as many messages as one command should hold in memory.
pub const MAX_COUNT: u64 = 1_000_000;

/// The largest `--max-payload-bytes`: Redis stores no bulk string longer
/// (its default `proto-max-bulk-len`).
pub const MAX_PAYLOAD_BYTES: u64 = 512 << 20;

/// A `--count`: checked here, so a count Redis would refuse never reaches
/// it.
fn parse_count(s: &str) -> Result<usize, String> {
    parse_in_range(s, MAX_COUNT, "a count")
}

fn parse_payload_bytes(s: &str) -> Result<usize, String> {
    parse_in_range(s, MAX_PAYLOAD_BYTES, "a size in bytes")
}

fn parse_in_range(s: &str, max: u64, what: &str) -> Result<usize, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{what} is a whole number in 1..={max}"))
}

/// Parse every id before anything is sent, so a typo changes nothing.
pub fn parse_ids(ids: &[String]) -> CliResult<Vec<eddy::EntryId>> {
    ids.iter()
        .map(|s| s.parse().map_err(CliError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_every_command_with_global_options() {
        for args in [
            &["eddy", "--json", "queue", "send", "q", "{}", "--ttl", "2s"][..],
            &["eddy", "queue", "send", "q", "-", "--json"],
            &["eddy", "queue", "receive", "q", "--block", "0.5", "--ack"],
            &["eddy", "queue", "receive", "q", "--follow", "--ack"],
            &[
                "eddy",
                "queue",
                "receive",
                "q",
                "--follow",
                "--ack",
                "--visibility-timeout",
                "500ms",
                "--count",
                "8",
                "--consumer",
                "c1",
            ],
            &["eddy", "queue", "ack", "q", "1-0", "2-0"],
            &[
                "eddy",
                "queue",
                "dead-letter",
                "q",
                "1-0",
                "--reason",
                "bad",
            ],
            &["eddy", "queue", "peek", "q", "--count", "3"],
            &["eddy", "queue", "info", "q", "--url", "memory://"],
            &["eddy", "queue", "list", "--prefix", "x:"],
            &["eddy", "queue", "purge", "q"],
            &["eddy", "queue", "delete", "q", "--keep-dlq"],
            &["eddy", "dlq", "list", "q", "--count", "5"],
            &["eddy", "dlq", "requeue", "q", "--all"],
            &["eddy", "dlq", "requeue", "q", "1-0"],
            &["eddy", "dlq", "purge", "q", "--max-payload-bytes", "10"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        for bad in [
            &["eddy", "dlq", "requeue", "q"][..],
            &["eddy", "dlq", "requeue", "q", "1-0", "--all"],
            &["eddy", "queue", "send", "q", "{}", "--ttl", "-1"],
            &["eddy", "queue", "send", "q", "{}", "--delay", "soon"],
            &["eddy", "queue", "ack", "q"],
            &["eddy", "queue", "receive", "q", "--follow"],
            &[
                "eddy", "queue", "receive", "q", "--follow", "--ack", "--block", "1s",
            ],
            &[
                "eddy",
                "queue",
                "receive",
                "q",
                "--visibility-timeout",
                "1s",
            ],
            &[
                "eddy",
                "queue",
                "receive",
                "q",
                "--follow",
                "--ack",
                "--visibility-timeout",
                "x",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_checked() {
        let ok = parse_ids(&["1700000000000-0".to_owned(), "1-2".to_owned()]);
        assert_eq!(ok.map(|v| v.len()).ok(), Some(2));
        let err = parse_ids(&["1-0".to_owned(), "nope".to_owned()]);
        assert!(err.is_err_and(|e| e.to_string().contains("`nope`")));
    }
}
