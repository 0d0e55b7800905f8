//! `eddy`: the command line for eddy's queues and dead-letter queues.
//!
//! ```text
//! eddy --url redis://127.0.0.1:6379/0 queue create emails
//! echo '{"to": "ada@example.com"}' | eddy queue send emails -
//! eddy queue receive emails --count 10 --ack --json
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod bench_cmd;
mod cli;
mod dashboard;
mod demo_cmd;
mod dlq_cmd;
mod duration;
mod error;
mod events_cmd;
mod logging;
mod output;
mod progress;
mod queue_cmd;
mod shop_cmd;
mod top_cmd;
mod webhook_cmd;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::CliResult;
use output::Output;

// mimalloc rather than glibc malloc: the hot path allocates per message
// (payload bytes, ids, decoded JSON), and glibc's malloc/free showed up
// high in the client's profiles (BENCHMARKS.md, "What each change bought").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version, printed as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Plain text, escaped: the message quotes the value given.
            let _ = write!(
                io::stderr(),
                "{}",
                output::escape_lines(&e.render().to_string())
            );
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let logging = logging::init(cli.global.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Command::Bench(args) = &cli.command {
        runtime.worker_threads(args.workers(&cli.global.url));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.global.json;
    let result = runtime.block_on(run(cli));
    logging.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `eddy queue peek q | head -1` closes stdout early: not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing useful can be done if stderr itself is gone.
            let _ = if json {
                // A program reading --json output gets the error as JSON too.
                writeln!(
                    io::stderr(),
                    "{}",
                    serde_json::json!({ "error": e.one_line() })
                )
            } else {
                writeln!(
                    io::stderr(),
                    "error: {}",
                    output::escape_controls(&e.one_line())
                )
            };
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CliResult {
    let g = cli.global;
    let default_prefix = match cli.command {
        Command::Webhook(_) => webhook_cmd::DEFAULT_PREFIX,
        Command::Events(_) => events_cmd::DEFAULT_PREFIX,
        Command::Completions { shell } => {
            // Needs no engine.
            // Written to a buffer first: clap_complete panics if its writer
            // fails, and stdout may be a closed pipe.
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "eddy", &mut script);
            io::stdout().write_all(&script)?;
            return Ok(());
        }
        _ => "mq:",
    };
    let mq = eddy::EddyBuilder::new(&g.url)
        .prefix(g.prefix.unwrap_or_else(|| default_prefix.to_owned()))
        .max_payload_bytes(g.max_payload_bytes)
        .open()
        .await?;
    let mut out = Output::new(g.json);
    match cli.command {
        Command::Queue(command) => queue_cmd::run(&mq, command, &mut out).await?,
        Command::Dlq(command) => dlq_cmd::run(&mq, command, &mut out).await?,
        Command::Tail { name, since } => events_cmd::tail(&mq, &name, since, &mut out).await?,
        Command::Events(command) => events_cmd::run(&mq, command, &mut out).await?,
        Command::Top { interval, once } => {
            top_cmd::run(&mq, interval, once, g.json, &mut out).await?
        }
        Command::Completions { .. } => {}
        Command::Webhook(command) => webhook_cmd::run(&mq, command, &mut out).await?,
        Command::Demo(args) => demo_cmd::run(&g.url, args, &mut out).await?,
        Command::Shop(command) => shop_cmd::run(&g.url, command, g.json).await?,
        Command::Bench(args) => bench_cmd::run(&g.url, args, &mut out).await?,
        Command::Dashboard(args) => dashboard::run(mq, args, &mut out).await?,
    }
    out.flush()?;
    Ok(())
}
