//! `eddy dashboard`: a web UI over the queues, their dead-letter queues and
//! the bus's routes, with the JSON API it reads (`/api/...`) and `/metrics`.
//!
//! The page is three static files compiled into the binary (no build step,
//! nothing fetched from elsewhere). Reads are open to whoever can reach the
//! address, which is loopback by default; actions (requeue, delete) need
//! the token the dashboard was started with ([`guard`]), and there is none
//! without `--token`: the dashboard is then read-only.

mod api;
mod guard;
mod history;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use tokio::sync::OnceCell;

use eddy::bus::Bus;
use eddy::metrics::Metrics;
use eddy::Eddy;

use crate::error::{CliError, CliResult};
use crate::output::Output;

pub use guard::Token;
use history::History;

/// `eddy dashboard` help, after the options.
pub const DASHBOARD_HELP: &str = "\
The page lists every queue under --prefix (default mq:; the bus's
subscription queues are under events:, so `eddy --prefix events: dashboard`
shows a service's queues) with its ready, unacknowledged, dead-lettered and
delayed messages, a chart of those counts over the last 10 minutes (sampled
every 2 s while the dashboard runs), each queue's consumers, its dead-letter
queue's messages with their failure reasons, a search by stream id, and the
bus's routes (event type -> services).

Access:
  --listen is loopback by default; another address prints a warning, since
  anyone who reaches it can read every queue's messages.
  Without --token the dashboard is read-only: actions answer 403.
  With --token every action (requeue, delete) needs the header
  `Authorization: Bearer TOKEN` (or `X-Eddy-Token: TOKEN`); the page asks
  for it once per browser tab. Actions take only JSON bodies and refuse a
  request from another site's page (its Origin is not this host).

API (JSON):
  GET  /api/overview                       read-only or not, prefix
  GET  /api/queues                         every queue with its counts
  GET  /api/queues/NAME                    queue info, consumers, its DLQ
  GET  /api/queues/NAME/dlq?count=N&from=ID  DLQ messages with failures
  GET  /api/messages/ID[?queue=NAME]       a message by stream id
  GET  /api/routes                         event type -> services
  GET  /api/throughput[?queue=NAME]        the sampled counts, and sent/s and
                                           settled/s between samples
  POST /api/queues/NAME/dlq/requeue        {\"ids\": [ID...]}
  POST /api/queues/NAME/dlq/requeue-all    {}
  POST /api/queues/NAME/dlq/requeue-reason {\"reason\": TEXT}
  POST /api/queues/NAME/dlq/delete         {\"ids\": [ID...]}
  POST /api/queues/NAME/delete             {\"ids\": [ID...]}
  GET  /metrics                            every queue's gauges (Prometheus)";

/// The default `--listen`: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

/// Time between two samples of the queue counts.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// Samples kept: ten minutes of them.
pub const SAMPLES_KEPT: usize = 300;

/// `eddy dashboard` options.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The address to serve on (a non-loopback address is reachable by
    /// others: a warning is printed).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Allow actions (requeue, delete) to requests that carry this token;
    /// without it the dashboard is read-only.
    #[arg(
        long,
        env = "EDDY_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub token: Option<String>,
}

/// What every request reads: the queues, the bus, the samples, the token.
#[derive(Debug, Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mq: Eddy,
    /// Opened at the first look at the routes (opening a bus creates its
    /// `events:all` log, which a dashboard that never shows routes need
    /// not do).
    bus: OnceCell<Bus>,
    token: Option<Token>,
    /// Whether the server listens on loopback only: then a request must
    /// name a loopback host, so that a page of another site whose name was
    /// made to resolve to 127.0.0.1 cannot read the API.
    loopback: bool,
    metrics: Metrics,
    history: History,
}

impl Dashboard {
    /// A dashboard over `mq`'s queues; actions need `token` (none without).
    pub fn new(mq: Eddy, token: Option<&str>, loopback: bool) -> CliResult<Self> {
        let token = token.map(Token::new).transpose()?;
        let metrics = Metrics::new();
        metrics.all_queues(&mq);
        Ok(Self {
            inner: Arc::new(Inner {
                mq,
                bus: OnceCell::new(),
                token,
                loopback,
                metrics,
                history: History::new(SAMPLES_KEPT),
            }),
        })
    }

    fn mq(&self) -> &Eddy {
        &self.inner.mq
    }

    async fn bus(&self) -> eddy::Result<&Bus> {
        self.inner
            .bus
            .get_or_try_init(|| Bus::with_engine(self.inner.mq.engine().clone()))
            .await
    }

    /// Take one sample of every queue's counts now.
    pub async fn sample(&self) -> eddy::Result<()> {
        let queues = self.mq().list_queues().await?;
        self.inner.history.record(&queues);
        Ok(())
    }

    /// Sample the counts every [`SAMPLE_EVERY`] until the task is aborted.
    fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let dashboard = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = dashboard.sample().await {
                    tracing::warn!(error = %e, "dashboard: could not sample the queues");
                }
            }
        })
    }

    /// The routes: the page, its API and `/metrics`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/overview", get(api::overview))
            .route("/queues", get(api::queues))
            .route("/queues/{name}", get(api::queue))
            .route("/queues/{name}/dlq", get(api::dead_letters))
            .route("/messages/{id}", get(api::message))
            .route("/routes", get(api::routes))
            .route("/throughput", get(api::throughput))
            .route("/queues/{name}/dlq/requeue", post(api::requeue))
            .route("/queues/{name}/dlq/requeue-all", post(api::requeue_all))
            .route(
                "/queues/{name}/dlq/requeue-reason",
                post(api::requeue_reason),
            )
            .route("/queues/{name}/dlq/delete", post(api::delete_dead_letters))
            .route("/queues/{name}/delete", post(api::delete_messages))
            .fallback(api::not_found);
        Router::new()
            .route(
                "/",
                get(|| async { page(PAGE_HTML, "text/html; charset=utf-8") }),
            )
            .route(
                "/app.js",
                get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
            )
            .route(
                "/style.css",
                get(|| async { page(STYLE_CSS, "text/css; charset=utf-8") }),
            )
            .route("/metrics", get(api::metrics))
            .nest("/api", api)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                guard::check_host,
            ))
            .with_state(self.clone())
    }
}

const PAGE_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// A static file, with headers that keep it from being framed by another
/// site or running anything but its own script.
fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `eddy dashboard`: serve until Ctrl-C.
pub async fn run(mq: Eddy, args: DashboardArgs, out: &mut Output) -> CliResult {
    let loopback = args.listen.ip().is_loopback();
    if !loopback {
        let _ = writeln!(
            std::io::stderr(),
            "warning: the dashboard listens on {}, which is not loopback: anyone who \
             reaches it can read every queue's messages{}",
            args.listen,
            if args.token.is_some() {
                " (actions need the token)"
            } else {
                ""
            }
        );
    }
    let dashboard = Dashboard::new(mq, args.token.as_deref(), loopback)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    let sampler = dashboard.spawn_sampler();
    let url = format!("http://{addr}/");
    out.result(
        serde_json::json!({ "dashboard": url, "read_only": args.token.is_none() }),
        &format!("dashboard on {url}"),
    )?;
    out.flush()?;
    let served = axum::serve(listener, dashboard.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    sampler.abort();
    served.map_err(|e| CliError::new(format!("the dashboard stopped: {e}")))
}
