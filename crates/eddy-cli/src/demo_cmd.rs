//! `eddy demo`: the seed's e-commerce example, end to end (the shop crate,
//! `examples/shop`, does the work; this prints it).

use std::io::{self, Write};

use clap::Args;
use eddy_shop::{run_demo, DemoOptions, DemoSummary, OrderStatus};

use crate::error::CliResult;
use crate::output::Output;

/// From this many orders on, progress goes to stderr every 10%.
const PROGRESS_FROM: usize = 1000;

/// `eddy demo` help, after the options.
pub const DEMO_HELP: &str = "\
The demo starts the seed's four services in this process — order-service,
payment-service, shipping-service, notification-service — on the engine
given by --url, places the orders (random users, 1 to 3 products each),
waits until every order is shipped or its payment failed, stops the
services and prints each order's final state and a summary.

On Redis the demo first RESETS the shop's queues under the `events:` prefix:
it deletes the four services' subscription queues (events:sub:order-service,
... with their dead-letter queues and anything pending) and their routes, so
an earlier run's leftovers do not mix in. Do not point it at a Redis where
the shop runs for real. Every event stays in the events:all log.

Output:
  The orders by status; each service's events handled, retried and
  dead-lettered with its handler time (p50, p99: bucket bounds); the event
  flow (per event type, how many each service handled); events published
  and handled, dead-lettered messages, the elapsed time and events handled
  per second. --verbose first prints the notifications (the last 1,000)
  and each order as `Order ID: status=..., tracking=..., payment=...`.
  With --json, exactly one JSON object:
    {\"orders\",\"by_status\",\"events_published\",\"events_handled\",
     \"dead_lettered\",\"elapsed_s\",\"events_per_s\",\"seed\",\"engine\",
     \"services\": [{\"name\",\"handled\",\"retried\",\"dead_lettered\",
     \"p50_ms\",\"p99_ms\"}], \"flow\": {TYPE: {SERVICE: N}}}
  With 1,000 orders or more, progress goes to stderr every 10%.

The demo uses the event bus's prefix `events:`; --prefix does not apply.

The same --seed gives every order the same outcome on every run.";

/// `eddy demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub orders: usize,

    /// The share of payments that fail, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    pub failure_rate: f64,

    /// Seed for the orders and their outcomes (default: random; the summary
    /// prints the one used).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Simulate the seed's processing times: 1.5 s per payment, 2 s per
    /// shipment.
    #[arg(long)]
    pub realistic: bool,

    /// Also print the notifications sent to customers and every order's
    /// final state.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Run the demo on `url` and print the result.
pub async fn run(url: &str, args: DemoArgs, out: &mut Output) -> CliResult {
    let mut opts = DemoOptions::new()
        .orders(args.orders)
        .failure_rate(args.failure_rate)
        .realistic(args.realistic)
        .progress(args.orders >= PROGRESS_FROM);
    if let Some(seed) = args.seed {
        opts = opts.seed(seed);
    }
    let summary = run_demo(url, opts).await?;
    let mut human = Vec::new();
    render(&summary, args.verbose, &mut human)?;
    let human = String::from_utf8_lossy(&human);
    out.result_of(&summary.to_json(), human.trim_end())?;
    Ok(())
}

/// The human output: with `verbose` each order and the notifications,
/// then the summary: orders by status, each service's handling, the
/// event flow, the totals.
fn render(s: &DemoSummary, verbose: bool, out: &mut impl Write) -> io::Result<()> {
    if verbose {
        writeln!(out, "Notifications:")?;
        for n in &s.notifications {
            writeln!(out, "  {}", n.text)?;
        }
        writeln!(out)?;
        for o in &s.order_states {
            let tracking = match (&o.tracking_number, &o.carrier) {
                (Some(t), Some(c)) => format!("{t} ({c})"),
                (Some(t), None) => t.clone(),
                _ => "-".to_owned(),
            };
            writeln!(
                out,
                "Order {}: status={}, tracking={tracking}, payment={}",
                o.order_id,
                o.status,
                o.payment_status.as_deref().unwrap_or("-"),
            )?;
        }
        writeln!(out)?;
    }
    let statuses: Vec<String> = OrderStatus::ALL
        .iter()
        .filter_map(|st| {
            let n = s.by_status.get(st.as_str()).copied().unwrap_or(0);
            (n > 0).then(|| format!("{n} {st}"))
        })
        .collect();
    writeln!(
        out,
        "{} orders on {} (seed {}): {}",
        s.orders,
        s.engine,
        s.seed,
        statuses.join(", ")
    )?;
    writeln!(out)?;
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |ms| format!("{ms:.3}"));
    writeln!(
        out,
        "{:<22} {:>9} {:>8} {:>14} {:>8} {:>8}",
        "SERVICE", "HANDLED", "RETRIED", "DEAD-LETTERED", "P50 MS", "P99 MS"
    )?;
    for r in &s.services {
        writeln!(
            out,
            "{:<22} {:>9} {:>8} {:>14} {:>8} {:>8}",
            r.name,
            r.handled,
            r.retried,
            r.dead_lettered,
            ms(r.p50_ms),
            ms(r.p99_ms)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "event flow (handled by each service):")?;
    for (event_type, by) in &s.flow {
        let to: Vec<String> = by.iter().map(|(svc, n)| format!("{svc} {n}")).collect();
        writeln!(out, "  {event_type:<26} -> {}", to.join(", "))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "events: {} published, {} handled, {} dead-lettered",
        s.events_published, s.events_handled, s.dead_lettered
    )?;
    writeln!(
        out,
        "elapsed: {:.3} s, {:.0} events handled/s",
        s.elapsed_s, s.events_per_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn demo(orders: usize, failure_rate: f64) -> DemoSummary {
        let opts = DemoOptions::new()
            .orders(orders)
            .failure_rate(failure_rate)
            .seed(5);
        run_demo("memory://", opts).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn human_output() {
        let s = demo(3, 0.0).await;
        let mut buf = Vec::new();
        render(&s, true, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("Notifications:\n"), "{text}");
        // Each order's notifications in the order its events happened.
        for id in ["ORD-000001", "ORD-000002", "ORD-000003"] {
            let at = |what: String| text.find(&what).unwrap();
            let created = at(format!("Order {id} created"));
            let paid = at(format!("for order {id} succeeded"));
            let shipped = at(format!("Order {id} shipped"));
            assert!(created < paid && paid < shipped, "{text}");
        }
        assert!(
            text.contains("Order ORD-000001: status=shipped, tracking=TRACK-"),
            "{text}"
        );
        assert!(text.contains(", payment=succeeded\n"), "{text}");
        assert!(
            text.contains("3 orders on memory:// (seed 5): 3 shipped\n"),
            "{text}"
        );
        assert!(
            text.contains("events: 9 published, 21 handled, 0 dead-lettered\n"),
            "{text}"
        );
        // The service table and the flow: three orders, each created, paid
        // and shipped.
        assert!(text.contains("\nSERVICE "), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("shipping-service"))
            .unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some("3"), "{text}");
        assert!(
            text.contains("OrderCreatedEvent") && text.contains("payment-service 3"),
            "{text}"
        );
        // Without --verbose, no line per order.
        let mut quiet = Vec::new();
        render(&s, false, &mut quiet).unwrap();
        let quiet = String::from_utf8(quiet).unwrap();
        assert!(!quiet.contains("Order ORD-000001:"), "{quiet}");
        assert!(quiet.starts_with("3 orders on memory://"), "{quiet}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_output_is_one_object_with_the_documented_keys() {
        let s = demo(4, 1.0).await;
        let text = serde_json::to_string(&s.to_json()).unwrap();
        let keys = [
            "orders",
            "by_status",
            "events_published",
            "events_handled",
            "dead_lettered",
            "elapsed_s",
            "events_per_s",
            "seed",
            "engine",
            "services",
            "flow",
        ];
        let at: Vec<Option<usize>> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")))
            .collect();
        assert!(at.iter().all(Option::is_some), "{text}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "in this order: {text}");
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j.as_object().map(|o| o.len()), Some(keys.len()), "{text}");
        assert_eq!(j["by_status"]["payment_failed"], 4);
        assert_eq!(j["events_published"], 8);
        assert_eq!(
            (j["seed"].as_u64(), j["engine"].as_str()),
            (Some(5), Some("memory://"))
        );
        // Every order failed its payment: no shipment was ever handled.
        assert_eq!(j["flow"]["OrderCreatedEvent"]["payment-service"], 4);
        assert!(j["flow"].get("ShipmentCreatedEvent").is_none(), "{text}");
        let handled: u64 = j["services"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["handled"].as_u64()).sum())
            .unwrap_or(0);
        assert_eq!(j["events_handled"].as_u64(), Some(handled));
    }
}
