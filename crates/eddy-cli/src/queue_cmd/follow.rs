//! `eddy queue receive NAME --follow --ack`: eddy's consumer loop until
//! SIGINT/SIGTERM, printing each message before acknowledging it.
//!
//! Handlers run on the loop's tasks, but stdout is held by [`Output`] in the
//! command's own task: a handler hands its message over and waits until it
//! is printed and flushed, and only then returns `Ok` (acknowledge). So a
//! message is acknowledged only after a reader of the pipe could see it.

use std::sync::Arc;
use std::time::Duration;

use eddy::queue::consumer::{self, default_consumer_name, ConsumerOptions};
use eddy::{Eddy, Fail, Message};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::ReceiveArgs;
use crate::error::{CliError, CliResult};
use crate::output::Output;

/// The visibility timeout when --visibility-timeout is not given (the
/// consumer loop's default).
const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages read at once when --count is not given: a read per message
/// (the plain `receive` default) would make a round trip per message.
const FOLLOW_COUNT: usize = 100;

/// Exit status after a second SIGINT/SIGTERM (128 + SIGINT, as shells do).
const INTERRUPTED_TWICE: i32 = 130;

/// A message to print, and where to say whether it was printed.
type ToPrint = (Message, oneshot::Sender<bool>);

/// Consume `args.name` until SIGINT/SIGTERM (or until stdout is closed).
pub async fn run(mq: &Eddy, args: ReceiveArgs, out: &mut Output) -> CliResult {
    let visibility = args
        .visibility_timeout
        .unwrap_or(DEFAULT_VISIBILITY_TIMEOUT);
    if visibility.is_zero() {
        return Err(CliError::new(
            "--visibility-timeout must be longer than zero (e.g. 500ms, 30s)",
        ));
    }
    let count = args.count.unwrap_or(FOLLOW_COUNT);
    if count == 0 {
        return Err(CliError::new("count must be at least 1"));
    }
    let queue = mq.queue(&args.name).await?;
    let mut opts = ConsumerOptions::new()
        .name(args.consumer.unwrap_or_else(default_consumer_name))
        .concurrency(count)
        .visibility_timeout(visibility)
        // One chain for every message: read `count` at a time, printed one
        // at a time in the order received.
        .ordering_key(|_| Some(String::new()));
    if let Some(keep) = args.history {
        opts = opts.history(keep);
    }
    if let Some(n) = args.history_length {
        opts = opts.history_length(n);
    }

    // Set up before the first read, so that from now on a signal stops the
    // loop cleanly instead of killing the process mid-batch.
    let stop = Arc::new(watch::channel(false).0);
    watch_signals(stop.clone())?;
    let mut stopped = stop.subscribe();
    let shutdown = async move {
        // An error means the sender is gone, which only happens at exit.
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    let (to_print, mut printing) = mpsc::channel::<ToPrint>(count);
    let handler = move |msg: Message| {
        let to_print = to_print.clone();
        async move {
            let (done, printed) = oneshot::channel();
            let id = msg.id;
            if to_print.send((msg, done)).await.is_ok() && printed.await == Ok(true) {
                return Ok(());
            }
            // Not printed (stdout closed): hand it back for another consumer
            // right away rather than after the visibility timeout.
            Err(Fail::retry_after(
                Duration::ZERO,
                format!("message {id} could not be printed: stdout is closed"),
            ))
        }
    };

    let consume = consumer::run(queue, opts, handler, shutdown);
    tokio::pin!(consume);
    let mut output_error = None;
    let stats = loop {
        tokio::select! {
            stats = &mut consume => break stats?,
            Some((msg, done)) = printing.recv() => {
                let printed = output_error.is_none() && match out.message_line(&msg) {
                    Ok(()) => true,
                    Err(e) => {
                        output_error = Some(e);
                        stop.send_replace(true);
                        false
                    }
                };
                // The handler may have timed out and gone: nothing to tell.
                let _ = done.send(printed);
            }
        }
    };
    let count = |c: &std::sync::atomic::AtomicU64| consumer::ConsumerStats::get(c);
    tracing::info!(
        delivered = count(&stats.delivered),
        redelivered = count(&stats.redelivered),
        acked = count(&stats.acked),
        errors = count(&stats.errors),
        "stopped following"
    );
    match output_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// On the first SIGINT or SIGTERM set `stop`; on a second one exit at once.
fn watch_signals(stop: Arc<watch::Sender<bool>>) -> CliResult {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("signal received: finishing the messages in hand, then exiting");
        stop.send_replace(true);
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        // Unacknowledged messages stay pending for another consumer.
        std::process::exit(INTERRUPTED_TWICE);
    });
    Ok(())
}
