//! `eddy shop SERVICE`: one of the seed's four shop services in this
//! process, on Redis (the shop crate, `examples/shop`, does the work;
//! order-service adds its HTTP API, `eddy_shop::http`).

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use eddy::bus::Bus;
use eddy_shop::{Notifications, Shop, ShopConfig, ShopService};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};

/// `eddy shop` help, after the subcommands.
pub const SHOP_HELP: &str = "\
Each command runs one of the shop's four services in this process, on the
Redis given by --url (memory:// is refused: services in different processes
meet on Redis). Run each in its own terminal; several instances of one
service share its queue (events:sub:SERVICE) and split its events. The
services use the event bus's prefix `events:`; --prefix does not apply.

  export EDDY_URL=redis://127.0.0.1:6379/0
  eddy shop payment-service &
  eddy shop shipping-service &
  eddy shop notification-service &
  eddy shop order-service --listen 127.0.0.1:8080 &
  curl -s -XPOST localhost:8080/orders -H 'content-type: application/json' \\
    -d '{\"user_id\": \"u1\", \"items\": [{\"product_id\": \"P-1002\",
         \"name\": \"Wireless mouse\", \"price\": 24.5, \"quantity\": 1}]}'
  curl -s localhost:8080/orders/ORDER_ID

Start the other services before placing the first order: a service's routes
are stored when it first starts, and events published before that never
reach it. From then on a stopped or crashed service misses nothing: its
queue keeps its events until it is back. Events a crashed instance had
taken but not finished are taken over by the next instance (a restarted one
too) after the visibility timeout, 30 s.

HTTP API (order-service):
  POST /orders    {\"user_id\", \"items\": [{\"product_id\", \"name\", \"price\",
                  \"quantity\"}]}, optionally \"order_id\" (else a UUID)
                  -> 201 {\"order_id\", \"status\", \"total\"}
                  -> 400 {\"error\"} for bad input (missing fields, no items,
                     negative price, quantity not a whole number >= 1),
                     409 if the order_id exists, 503 if it was not published
  GET /orders/ID  -> 200 the order: order_id, user_id, items, total, status,
                     payment_id, payment_status, amount, tracking_number,
                     carrier, created_at, payment_processed_at, shipped_at,
                     updated_at, adopted (timestamps: float epoch seconds)
                  -> 404 {\"error\"}
  GET /orders     -> 200 {\"count\", \"by_status\": {\"created\", \"paid\",
                     \"payment_failed\", \"shipped\"}, \"orders\": [...]};
                     ?status=S lists only those (by_status counts all)

Orders live in order-service's memory; nothing is persisted. A restarted
order-service starts with no orders: events that still arrive for orders it
does not know are retried, then adopted (the order reappears with its
status, payment and shipment, without user or items, \"adopted\": true). Run
one order-service: replicas would not share their orders.

payment-service and shipping-service draw each order's outcome from --seed
and the order id. Give every instance the same seed (the default, 0, is the
same everywhere): a restarted or second instance that handles an order
again then publishes the same payment or shipment (a duplicate, ignored),
never a contradicting one.

Output (stdout):
  order-service         `order-service: listening on http://ADDR ...` once
                        it takes orders
  the others            `SERVICE: running ...` once subscribed
  notification-service  then one line per notification
  every service         `SERVICE: stopped ...` on exit
  With --json each of these lines is a JSON object; a notification is
  {\"event_id\", \"event_type\", \"order_id\", \"text\"}.

Stopping: SIGINT or SIGTERM stops taking events (and HTTP connections), lets
those in progress finish (up to 10 s) and exits 0; unfinished events stay
pending for the next instance. A second signal exits at once (status 130).";

/// `eddy shop ...`
#[derive(Debug, Subcommand)]
pub enum ShopCommand {
    /// Run order-service with its HTTP API (POST /orders, GET /orders/ID,
    /// GET /orders); orders are kept in memory only.
    #[command(name = "order-service")]
    Order(OrderServiceArgs),
    /// Run payment-service: pays each new order (a share of payments fail).
    #[command(name = "payment-service")]
    Payment(PaymentServiceArgs),
    /// Run shipping-service: ships each paid order.
    #[command(name = "shipping-service")]
    Shipping(ShippingServiceArgs),
    /// Run notification-service: prints a notification for every event.
    #[command(name = "notification-service")]
    Notification(CommonArgs),
}

/// Options of every service.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Events handled at once.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Events held by a crashed instance of this service are taken over by
    /// another instance after this long (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = crate::duration::parse_duration)]
    pub visibility_timeout: std::time::Duration,
    /// Handled events kept on the service's subscription queue, trimmed as
    /// it goes (e.g. 0s keeps none, 30s, 10m).
    #[arg(long, default_value = "1m", value_name = "DUR", value_parser = crate::duration::parse_duration)]
    pub history: std::time::Duration,
    /// Also keep at most N handled events, however young (default: no
    /// limit but --history's; 0 keeps none).
    #[arg(long, value_name = "N")]
    pub history_length: Option<u64>,
    /// Serve this service's Prometheus metrics at http://ADDR/metrics
    /// (HOST:PORT; port 0 picks a free one, the `metrics on` line says
    /// which).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl ShopCommand {
    /// The options every service has.
    fn common(&self) -> &CommonArgs {
        match self {
            ShopCommand::Order(a) => &a.common,
            ShopCommand::Payment(a) => &a.common,
            ShopCommand::Shipping(a) => &a.common,
            ShopCommand::Notification(a) => a,
        }
    }
}

/// `eddy shop order-service`
#[derive(Debug, Args)]
pub struct OrderServiceArgs {
    /// Where the HTTP API listens, HOST:PORT (port 0 picks a free one; the
    /// `listening on` line says which).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `eddy shop payment-service`
#[derive(Debug, Args)]
pub struct PaymentServiceArgs {
    /// The share of payments that fail, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.1, value_name = "F", value_parser = parse_rate)]
    pub failure_rate: f64,

    /// Seeds each order's outcome and payment id (with the order id).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,

    /// Take the seed's 1.5 s per payment.
    #[arg(long, conflicts_with = "delay")]
    pub realistic: bool,

    /// Simulated processing time per payment: seconds or 500ms, 2s
    /// (default 0).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub delay: Option<Duration>,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `eddy shop shipping-service`
#[derive(Debug, Args)]
pub struct ShippingServiceArgs {
    /// Seeds each order's tracking number and carrier (with the order id).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,

    /// Take the seed's 2 s per shipment.
    #[arg(long, conflicts_with = "delay")]
    pub realistic: bool,

    /// Simulated processing time per shipment: seconds or 500ms, 2s
    /// (default 0).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub delay: Option<Duration>,

    #[command(flatten)]
    pub common: CommonArgs,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "invalid failure rate `{text}`: use a number from 0.0 to 1.0"
        )),
    }
}

/// How often notification-service's new notifications are printed.
const PRINT_EVERY: Duration = Duration::from_millis(100);

/// Run one service on `url` until SIGINT/SIGTERM.
pub async fn run(url: &str, command: ShopCommand, json: bool) -> CliResult {
    let metrics_listen = command.common().metrics_listen;
    let (service, config, listen) = plan(command);
    if url.starts_with("memory:") {
        return Err(CliError::new(
            "`eddy shop` runs one service per process, and processes meet on Redis: \
             give --url redis://HOST:PORT/DB (or set EDDY_URL); `eddy demo` runs all \
             four services in one process on memory://",
        ));
    }
    // Handlers are in place before anything starts, so an early signal
    // still stops the service gracefully.
    let stop = on_signals()?;
    let listener = match &listen {
        Some(addr) => Some(
            TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?,
        ),
        None => None,
    };
    // The endpoint is bound before the service starts, so a taken port
    // fails the command before anything runs; what it reports is read at
    // each scrape.
    let metrics = eddy::metrics::Metrics::new();
    let metrics_server = match metrics_listen {
        Some(addr) => Some(metrics.serve(addr).await?),
        None => None,
    };
    let config = match &metrics_server {
        Some(_) => config.metrics(&metrics),
        None => config,
    };
    let bus = Bus::open(url).await?;
    let engine = bus.queues().engine().describe();
    let shop = Arc::new(Shop::start_services(bus, config, &[service]).await?);
    if let Some(server) = &metrics_server {
        let addr = server.addr();
        let said = if json {
            json!({"service": service.name(), "metrics": format!("http://{addr}/metrics")})
                .to_string()
        } else {
            format!("{}: metrics on http://{addr}/metrics", service.name())
        };
        line(&said)?;
    }
    let notifications = shop.notifications().clone();
    let mut printer = Printer::default();
    let name = service.name();

    let ran = match listener {
        Some(listener) => serve_orders(listener, shop.clone(), &engine, stop, json).await,
        None => {
            let ready = if json {
                json!({"service": name, "running": true, "engine": engine}).to_string()
            } else {
                format!("{name}: running on {engine}; stop with Ctrl-C or SIGTERM")
            };
            match line(&ready) {
                Ok(()) if service == ShopService::Notification => {
                    printer.follow(&notifications, stop, json).await
                }
                Ok(()) => {
                    // A dropped sender (the signal task is gone) stops too.
                    let _ = stop.await;
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
    };

    // Stop whatever happened above: in-flight events finish or stay pending.
    let stopped = match unwrap_shop(shop).await {
        Some(shop) => {
            let (handled, published) = (shop.events_handled(), shop.events_published());
            shop.stop().await.map(|()| (handled, published))
        }
        None => Err(eddy::Error::new(
            eddy::ErrorKind::Backend,
            "HTTP requests still held order-service after the server stopped",
        )),
    };
    ran?;
    let (handled, published) = stopped?;
    if service == ShopService::Notification {
        printer.print_new(&notifications, json)?;
    }
    let bye = if json {
        json!({"service": name, "stopped": true, "events_handled": handled, "events_published": published})
            .to_string()
    } else {
        format!("{name}: stopped after handling {handled} events, publishing {published}")
    };
    line(&bye)?;
    Ok(())
}

/// The service, its configuration and (for order-service) the address to
/// listen on.
fn plan(command: ShopCommand) -> (ShopService, ShopConfig, Option<String>) {
    // The seed is fixed by default, so that every instance decides alike.
    let base = |common: &CommonArgs| {
        ShopConfig::new()
            .seed(0)
            .concurrency(common.concurrency as usize)
            .visibility_timeout(common.visibility_timeout)
            .history(common.history)
            .history_length(common.history_length)
    };
    match command {
        ShopCommand::Order(a) => (ShopService::Order, base(&a.common), Some(a.listen)),
        ShopCommand::Payment(a) => {
            let delay = if a.realistic {
                ShopConfig::realistic().payment_delay
            } else {
                a.delay.unwrap_or(Duration::ZERO)
            };
            let config = base(&a.common)
                .seed(a.seed)
                .failure_rate(a.failure_rate)
                .payment_delay(delay);
            (ShopService::Payment, config, None)
        }
        ShopCommand::Shipping(a) => {
            let delay = if a.realistic {
                ShopConfig::realistic().shipping_delay
            } else {
                a.delay.unwrap_or(Duration::ZERO)
            };
            let config = base(&a.common).seed(a.seed).shipping_delay(delay);
            (ShopService::Shipping, config, None)
        }
        ShopCommand::Notification(a) => (ShopService::Notification, base(&a), None),
    }
}

/// order-service: serve the HTTP API until `stop`, then let the requests in
/// progress finish.
async fn serve_orders(
    listener: TcpListener,
    shop: Arc<Shop>,
    engine: &str,
    stop: oneshot::Receiver<()>,
    json: bool,
) -> CliResult {
    let addr = listener.local_addr()?;
    let ready = if json {
        json!({"service": "order-service", "listening": format!("http://{addr}"), "engine": engine})
            .to_string()
    } else {
        format!("order-service: listening on http://{addr} (events on {engine}); stop with Ctrl-C or SIGTERM")
    };
    line(&ready)?;
    eddy_shop::http::serve(listener, shop, async {
        let _ = stop.await;
    })
    .await?;
    Ok(())
}

/// The shop back from the HTTP server, which gives its clones up once its
/// last connection has closed.
async fn unwrap_shop(mut shop: Arc<Shop>) -> Option<Shop> {
    for _ in 0..1000 {
        match Arc::try_unwrap(shop) {
            Ok(shop) => return Some(shop),
            Err(still_shared) => shop = still_shared,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Print one line on stdout and flush it (readers wait for these lines).
fn line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Completes on the first SIGINT or SIGTERM; the second exits the process
/// at once with status 130.
fn on_signals() -> io::Result<oneshot::Receiver<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(());
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = writeln!(
            io::stderr(),
            "second signal: exiting now; unfinished events stay pending for the next instance"
        );
        std::process::exit(130);
    });
    Ok(rx)
}

/// Prints notification-service's notifications as they are sent.
#[derive(Debug, Default)]
struct Printer {
    /// Notifications printed (or skipped) so far.
    seen: u64,
}

impl Printer {
    /// Print new notifications every [`PRINT_EVERY`] until `stop`.
    async fn follow(
        &mut self,
        notes: &Notifications,
        mut stop: oneshot::Receiver<()>,
        json: bool,
    ) -> CliResult {
        let mut tick = tokio::time::interval(PRINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tick.tick() => self.print_new(notes, json)?,
            }
        }
    }

    /// Print the notifications sent since the last call.
    fn print_new(&mut self, notes: &Notifications, json: bool) -> io::Result<()> {
        // The list and the total are read under two locks: retry until no
        // notification came in between, so the list's last entry is number
        // `total`.
        let mut snapshot = None;
        for _ in 0..100 {
            let before = notes.total();
            let recent = notes.recent();
            if notes.total() == before {
                snapshot = Some((before, recent));
                break;
            }
            std::thread::yield_now();
        }
        // Still moving: print them next time.
        let Some((total, recent)) = snapshot else {
            return Ok(());
        };
        if total <= self.seen {
            return Ok(());
        }
        let first_kept = total - recent.len() as u64;
        let mut out = io::stdout().lock();
        if first_kept > self.seen {
            let _ = writeln!(
                io::stderr(),
                "notification-service: {} notifications not printed (more than {} within {PRINT_EVERY:?})",
                first_kept - self.seen,
                recent.len()
            );
            self.seen = first_kept;
        }
        let skip = (self.seen - first_kept) as usize;
        for n in &recent[skip..] {
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(n).map_err(io::Error::other)?
                )?;
            } else {
                writeln!(out, "{}", n.text)?;
            }
        }
        self.seen = total;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ShopCommand, clap::Error> {
        let mut all = vec!["eddy", "shop"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Shop(c) => Ok(c),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn options_make_the_config() {
        let (service, config, listen) = plan(parse(&["order-service"]).unwrap());
        assert_eq!(service, ShopService::Order);
        assert_eq!(listen.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!((config.seed, config.concurrency), (0, 64));
        // `--history`'s default is the library's.
        assert_eq!(config.history, eddy::queue::consumer::DEFAULT_HISTORY);
        let (_, config, _) = plan(parse(&["shipping-service", "--history", "0s"]).unwrap());
        assert_eq!(config.history, Duration::ZERO);
        assert_eq!(config.history_length, None);
        let (_, config, _) = plan(parse(&["shipping-service", "--history-length", "100"]).unwrap());
        assert_eq!(config.history_length, Some(100));

        let (service, config, listen) = plan(
            parse(&[
                "payment-service",
                "--failure-rate",
                "0.25",
                "--seed",
                "9",
                "--delay",
                "250ms",
                "--concurrency",
                "4",
            ])
            .unwrap(),
        );
        assert_eq!((service, listen), (ShopService::Payment, None));
        assert_eq!(config.failure_rate, 0.25);
        assert_eq!(config.seed, 9);
        assert_eq!(config.payment_delay, Duration::from_millis(250));
        assert_eq!(config.concurrency, 4);

        let (_, config, _) = plan(parse(&["shipping-service", "--realistic"]).unwrap());
        assert_eq!(config.shipping_delay, Duration::from_secs(2));
        let (service, _, _) = plan(parse(&["notification-service"]).unwrap());
        assert_eq!(service, ShopService::Notification);

        for bad in [
            &["payment-service", "--failure-rate", "1.5"][..],
            &["payment-service", "--realistic", "--delay", "1s"],
            &["payment-service", "--concurrency", "0"],
            &["notification-service", "--seed", "1"],
            &["order-service", "--failure-rate", "0.1"],
            &["inventory-service"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn memory_is_refused() {
        let err = run("memory://", parse(&["payment-service"]).unwrap(), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("meet on Redis"), "{err}");
    }
}
