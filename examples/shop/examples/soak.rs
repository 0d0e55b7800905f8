//! The soak program (a measurement, not a test): the shop on its own
//! redis-server at a fixed order rate, with every service's history and
//! the bus's `all` log kept 30 s, and Redis's `used_memory` sampled every
//! 10 s. With eddy's retention the memory rises for the first half minute
//! (until the kept history is full) and then stays flat, however long it
//! runs.
//!
//! ```text
//! cargo run --release -p eddy-shop --example soak -- [MINUTES] [ORDERS_PER_S]
//! ```
//!
//! Defaults: 10 minutes, 50 orders a second (each order is five events
//! fanned out to the four services' queues). It prints one line per
//! sample, then the flatness verdict: the lowest and highest `used_memory`
//! of the first and second half after the first minute, flat when both
//! move by 5% or less (see `verdict`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use eddy::bus::Bus;
use eddy_shop::{Item, Shop, ShopConfig};
use eddy_testkit::RedisServer;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const RETENTION: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes = args.first().map(|a| a.parse::<f64>()).unwrap_or(Ok(10.0));
    let rate = args.get(1).map(|a| a.parse::<f64>()).unwrap_or(Ok(50.0));
    let (minutes, rate) = match (minutes, rate) {
        (Ok(m), Ok(r)) if m > 0.0 && r > 0.0 => (m, r),
        _ => {
            eprintln!("usage: soak [MINUTES] [ORDERS_PER_S] (positive numbers)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Duration::from_secs_f64(minutes * 60.0), rate)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One sample of the server.
struct Sample {
    at: Duration,
    orders: u64,
    used_memory: u64,
    entries: u64,
    consumers: u64,
}

async fn run(length: Duration, rate: f64) -> Result<()> {
    let redis = RedisServer::start()?;
    let bus = Bus::open(&redis.url()).await?.log_history(Some(RETENTION));
    let config = ShopConfig::new().history(RETENTION).failure_rate(0.1);
    let shop = Shop::start(bus.clone(), config).await?;
    println!(
        "soak: the shop on redis-server {} for {:.0} s at {rate} orders/s, history and the all log kept {} s",
        redis.url(),
        length.as_secs_f64(),
        RETENTION.as_secs()
    );
    println!(
        "{:>6}  {:>7}  {:>12}  {:>14}  {:>9}",
        "t (s)", "orders", "used_memory", "stream entries", "consumers"
    );
    let items = vec![Item::new("P-1001", "Mechanical keyboard", 89.99, 1)];
    let started = Instant::now();
    let mut orders = 0u64;
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        let at = started.elapsed();
        if at >= next_sample {
            let s = sample(&redis, &bus, at, orders).await?;
            println!(
                "{:>6.0}  {:>7}  {:>12}  {:>14}  {:>9}",
                s.at.as_secs_f64(),
                s.orders,
                s.used_memory,
                s.entries,
                s.consumers
            );
            samples.push(s);
            next_sample += SAMPLE_EVERY;
        }
        if at >= length {
            break;
        }
        tick.tick().await;
        shop.create_order(&format!("user-{}", orders % 97), items.clone())
            .await?;
        orders += 1;
    }
    let dead = shop.dead_lettered().await?;
    shop.stop().await?;
    verdict(&samples, dead);
    Ok(())
}

async fn sample(redis: &RedisServer, bus: &Bus, at: Duration, orders: u64) -> Result<Sample> {
    let info = redis.redis_cli(["INFO", "memory"])?;
    let used_memory = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .ok_or("INFO memory has no used_memory")?
        .trim()
        .parse()?;
    let mut entries = 0;
    let mut consumers = 0;
    for q in bus.queues().list_queues().await? {
        entries += q.length;
        consumers += q.consumers.len() as u64;
    }
    Ok(Sample {
        at,
        orders,
        used_memory,
        entries,
        consumers,
    })
}

/// Trims run every half retention window, so `used_memory` is a sawtooth
/// between the history kept and that plus one trim period (about 20% apart
/// here), and a 10 s sample lands anywhere on it: first-against-last
/// compares a trough with a peak. The verdict compares the envelopes
/// instead: the lowest and highest samples of the first and the second
/// half of the steady state (after the first minute). Flat means the
/// second half's envelope is within 5% of the first's at both ends.
fn verdict(samples: &[Sample], dead: u64) {
    let after = |s: &&Sample| s.at >= Duration::from_secs(60);
    let steady: Vec<&Sample> = samples.iter().filter(after).collect();
    if steady.len() < 4 {
        println!("soak: ran under a minute and a half; no steady state to judge");
        return;
    }
    let (early, late) = steady.split_at(steady.len() / 2);
    let envelope = |half: &[&Sample]| {
        let low = half.iter().map(|s| s.used_memory).min().unwrap_or(0);
        let high = half.iter().map(|s| s.used_memory).max().unwrap_or(0);
        (low, high)
    };
    let ((low1, high1), (low2, high2)) = (envelope(early), envelope(late));
    let change = |from: u64, to: u64| (to as f64 - from as f64) / from.max(1) as f64 * 100.0;
    let max_entries = steady.iter().map(|s| s.entries).max().unwrap_or(0);
    let orders = steady.last().map_or(0, |s| s.orders);
    let flat = change(low1, low2).abs() <= 5.0 && change(high1, high2).abs() <= 5.0;
    println!(
        "soak: after the first minute used_memory stayed within {low1}..{high1} bytes in the first half and {low2}..{high2} in the second (low {:+.1}%, high {:+.1}%): {}; stream entries at most {max_entries}; {orders} orders, {dead} dead-lettered",
        change(low1, low2),
        change(high1, high2),
        if flat { "flat" } else { "NOT FLAT" },
    );
}
