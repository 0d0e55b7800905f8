//! The conformance suite: one set of behaviour tests that every engine must
//! pass, the way Watermill runs one Pub/Sub suite against every transport.
//!
//! A backend's test file is a constructor and nothing else:
//!
//! ```
//! use eddy_testkit::conformance::Harness;
//!
//! async fn memory(case: &'static str) -> Option<Harness> {
//!     Some(Harness::open("memory", "memory://", case).await.expect("memory engine"))
//! }
//! mod memory_engine {
//!     eddy_testkit::conformance_tests!(super::memory);
//! }
//! ```
//!
//! [`conformance_tests!`](crate::conformance_tests) expands to one
//! `#[tokio::test]` per case, so each case shows up as its own test for each
//! engine; [`ALL`] lists the same cases for a custom runner.
//!
//! Besides the queue API, the suite covers what is built on it: the consumer
//! loop ([`consumer`], [`reclaim`]), the event bus ([`bus`]), the service
//! runtime ([`service`]), webhooks ([`webhook`]) and the rows of the fault
//! matrix that need no second process or network fault ([`faults`]). Those
//! cases run on a current-thread runtime like the rest, and pause time where
//! the engine allows it ([`Harness::pause_time`]), so that on the embedded
//! engine a case that waits a visibility timeout or a backoff takes no wall
//! time; a case that needs threads of its own (CPU-bound handlers running side
//! by side) is marked `multi_thread` in the list and runs in real time.
//!
//! Each case gets a fresh [`Harness`]: its own random key prefix (tests never
//! collide, even on a shared server), the engine's [`Capabilities`] and a
//! name. A case that needs a capability the engine lacks returns
//! [`Outcome::NotApplicable`] with the reason, which is printed: no assertion
//! that applies is ever skipped silently.

pub mod bus;
pub mod consumer;
pub mod counting;
pub mod dead_letter;
pub mod faults;
pub mod integrity;
pub mod leases;
pub mod messages;
pub mod metrics;
pub mod parked;
pub mod queues;
pub mod receive;
pub mod reclaim;
pub mod retention;
pub mod send;
pub mod service;
pub mod support;
pub mod timing;
pub mod transactions;
pub mod volume;
pub mod webhook;

use std::any::Any;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::RedisServer;

use eddy::engine::{Capabilities, SharedEngine};
use eddy::{Eddy, EddyBuilder, EntryId, ErrorKind, Message, Queue, Receive};
use futures::future::BoxFuture;
use serde_json::{json, Value};

/// What a case found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every assertion ran and held.
    Passed,
    /// The case needs a capability this engine does not have.
    NotApplicable(&'static str),
}

/// An unexpected error inside a case (from eddy, or from what a case uses
/// besides it: a task, `redis-cli`, a proxy), with where it happened.
#[derive(Debug)]
pub struct CaseError {
    error: Box<dyn std::error::Error + Send + Sync>,
    location: &'static Location<'static>,
}

// Like `anyhow::Error`, `CaseError` is not itself a `std::error::Error`, so
// that every error converts into it with `?`.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for CaseError {
    #[track_caller]
    fn from(error: E) -> Self {
        Self {
            error: Box::new(error),
            location: Location::caller(),
        }
    }
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error.downcast_ref::<eddy::Error>() {
            Some(e) => write!(f, "{e} (kind {:?}) at {}", e.kind(), self.location),
            None => write!(f, "{} at {}", self.error, self.location),
        }
    }
}

/// What a case returns.
pub type CaseResult = Result<Outcome, CaseError>;

/// A case of the suite, as [`ALL`] lists it.
pub type CaseFn = for<'a> fn(&'a Harness) -> BoxFuture<'a, CaseResult>;

/// The tokio runtime a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Runtime {
    /// One thread (`#[tokio::test]`): time can be paused.
    CurrentThread,
    /// Two worker threads, for a case that needs work to run in parallel;
    /// time is real.
    MultiThread,
}

/// One entry of [`ALL`].
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// `module::case`.
    pub name: &'static str,
    /// The case.
    pub run: CaseFn,
    /// What to run it on.
    pub runtime: Runtime,
}

/// One engine, set up for one case.
pub struct Harness {
    engine_name: String,
    case: String,
    url: String,
    prefix: String,
    engine: SharedEngine,
    capabilities: Capabilities,
    /// Whether [`Harness::pause_time`] paused `tokio::time`.
    paused: AtomicBool,
    /// Dropped last: whatever keeps the engine's server alive.
    guard: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("engine", &self.engine_name)
            .field("case", &self.case)
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl Harness {
    /// Open the engine at `url` for case `case`, under a fresh random prefix.
    pub async fn open(engine_name: &str, url: &str, case: &str) -> eddy::Result<Self> {
        let engine = eddy::engine::open(url).await?;
        let capabilities = engine.capabilities();
        Ok(Self {
            engine_name: engine_name.to_owned(),
            case: case.to_owned(),
            url: url.to_owned(),
            prefix: format!("t{:016x}:", rand::random::<u64>()),
            engine,
            capabilities,
            paused: AtomicBool::new(false),
            guard: None,
        })
    }

    /// Keep `guard` (e.g. a `RedisServer`) alive as long as the harness.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The engine's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `redis-server` behind the engine, when the harness keeps one alive
    /// (see [`Harness::with_guard`]): for the few checks only Redis can make
    /// (raw commands, `INFO`), beside the engine-generic ones.
    pub fn redis_server(&self) -> Option<&RedisServer> {
        self.guard.as_deref()?.downcast_ref::<RedisServer>()
    }

    /// The engine's name (`memory`, `redis`).
    pub fn engine_name(&self) -> &str {
        &self.engine_name
    }

    /// The case's name.
    pub fn case(&self) -> &str {
        &self.case
    }

    /// The engine's optional behaviours.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The key layout the engine uses under this case's prefix: LeanMQ's,
    /// or on a Redis Cluster the one that keeps each queue in one hash slot
    /// (`PREFIX{NAME}`).
    pub fn layout(&self) -> eddy::engine::KeyLayout {
        let layout = if self.capabilities.clustered {
            eddy::engine::KeyLayout::clustered(&self.prefix)
        } else {
            eddy::engine::KeyLayout::new(&self.prefix)
        };
        layout.unwrap_or_else(|e| panic!("the harness's prefix is valid: {e}"))
    }

    /// The stream key of queue `name` under this case's layout.
    pub fn stream_key(&self, name: &str) -> String {
        self.layout()
            .queue(name)
            .unwrap_or_else(|e| panic!("`{name}` is a valid name: {e}"))
            .stream
    }

    /// This case's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The engine underneath.
    pub fn engine(&self) -> &SharedEngine {
        &self.engine
    }

    /// Settings for an [`Eddy`] under this case's prefix; open it with
    /// [`Harness::eddy_from`].
    pub fn builder(&self) -> EddyBuilder {
        EddyBuilder::new(self.url.clone()).prefix(self.prefix.clone())
    }

    /// An [`Eddy`] on the engine under this case's prefix.
    pub fn eddy(&self) -> Eddy {
        self.eddy_from(self.builder())
    }

    /// An [`Eddy`] on the engine with other settings.
    pub fn eddy_from(&self, builder: EddyBuilder) -> Eddy {
        builder
            .with_engine(self.engine.clone())
            .expect("the harness's prefix is valid")
    }

    /// An [`Eddy`] on the same engine under another prefix (this case's
    /// prefix plus `suffix`).
    pub fn eddy_with_prefix(&self, suffix: &str) -> Eddy {
        self.eddy_from(self.builder().prefix(format!("{}{suffix}", self.prefix)))
    }

    /// A second, independent connection to the same data, as another process
    /// would open it; `None` unless the engine is `shared_between_processes`.
    pub async fn reconnect(&self) -> eddy::Result<Option<Eddy>> {
        if !self.capabilities.shared_between_processes {
            return Ok(None);
        }
        Ok(Some(self.builder().open().await?))
    }

    /// Pause `tokio::time` if the engine's clock follows it and the case runs
    /// on a current-thread runtime (the only kind tokio can pause); returns
    /// whether time is paused. Paused, the runtime jumps ahead to the next
    /// timer whenever every task waits, so sleeps take no wall time.
    pub fn pause_time(&self) -> bool {
        let current_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        if !self.capabilities.virtual_time || !current_thread {
            return false;
        }
        if !self.paused.swap(true, Ordering::SeqCst) {
            tokio::time::pause();
        }
        true
    }

    /// Let `d` pass on the engine's clock: advance paused time on a
    /// virtual-time engine, sleep otherwise.
    pub async fn advance(&self, d: Duration) {
        if self.paused.load(Ordering::SeqCst) {
            tokio::time::advance(d).await;
        } else {
            tokio::time::sleep(d).await;
        }
    }

    /// Report a case's result: panic (failing the test) on an error, print
    /// a line when the case did not apply.
    #[track_caller]
    pub fn report(&self, result: CaseResult) {
        match result {
            Ok(Outcome::Passed) => {}
            Ok(Outcome::NotApplicable(why)) => eprintln!(
                "conformance {} on {}: not applicable: {why}",
                self.case, self.engine_name
            ),
            Err(e) => panic!(
                "conformance {} on {} failed: {e}",
                self.case, self.engine_name
            ),
        }
    }
}

/// Every case of the suite's list, in one place: calls
/// `target! { args [module::case, ...] }`. Used by [`conformance_tests!`]
/// and [`ALL`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (($($target:tt)+) $($args:tt)*) => {
        $($target)+ ! { $($args)* [
            queues::create_queue_pair_returns_queue_and_dlq,
            integrity::publish_to_a_route_without_a_queue_writes_nothing,
            queues::create_queue_pair_is_idempotent,
            queues::unknown_queue_is_not_found,
            queues::invalid_names_are_rejected,
            queues::list_queues_is_empty_for_a_new_prefix,
            queues::list_queues_shows_queues_and_dlqs_sorted,
            queues::delete_queue_removes_queue_and_dlq,
            queues::delete_queue_keep_dlq_keeps_dead_letters,
            queues::delete_unknown_queue_is_not_found,
            queues::operations_on_a_deleted_queue,
            queues::purge_of_a_deleted_queue_does_not_resurrect_it,
            queues::queues_are_independent,
            queues::prefixes_are_independent,
            queues::second_connection_shares_queues,
            queues::data_outlives_the_writer,
            send::send_returns_increasing_ids_that_receive_returns,
            send::payload_round_trips_exactly,
            send::typed_payloads_round_trip,
            send::message_id_option_is_kept,
            send::metadata_field_is_reserved,
            send::non_object_payload_is_rejected_and_nothing_written,
            send::oversize_payload_is_rejected_and_nothing_written,
            send::invalid_send_options_are_rejected,
            send::send_batch_sends_all_in_order,
            send::send_batch_with_a_bad_payload_writes_nothing,
            send::send_to_deleted_queue_is_not_found,
            receive::receive_on_empty_queue_returns_nothing,
            receive::receive_respects_count,
            receive::new_messages_have_delivery_count_one,
            receive::received_messages_are_not_redelivered,
            receive::consumer_shows_in_info,
            receive::consumer_that_read_nothing_is_listed,
            receive::blocking_receive_times_out_empty,
            receive::blocking_receive_wakes_on_send,
            receive::messages_sent_before_first_consumer_are_delivered,
            receive::competing_consumers_get_disjoint_messages,
            receive::concurrent_consumers_get_disjoint_messages,
            receive::invalid_receive_arguments_are_rejected,
            receive::dlq_can_be_received_from,
            messages::ack_returns_count_and_clears_pending,
            messages::ack_of_unknown_ids_counts_zero,
            messages::ack_on_dlq_is_an_error,
            messages::delete_removes_messages,
            messages::lag_ignores_deleted_messages,
            messages::peek_does_not_deliver,
            messages::peek_from_starts_at_id,
            messages::peek_on_dlq,
            messages::purge_removes_everything_and_queue_stays_usable,
            messages::purge_of_empty_queue_returns_zero,
            messages::info_reports_state,
            messages::info_idle_times_grow,
            messages::info_reports_the_oldest_pending_age,
            dead_letter::dead_letter_moves_atomically,
            dead_letter::dead_letter_twice_returns_zero,
            dead_letter::dead_letter_of_undelivered_message,
            dead_letter::dead_letter_messages_in_hand,
            dead_letter::dlq_only_and_queue_only_operations_are_rejected,
            dead_letter::requeue_moves_back_with_history,
            dead_letter::requeue_unknown_id_returns_zero,
            dead_letter::requeue_all_moves_everything,
            dead_letter::failure_history_accumulates_over_round_trips,
            dead_letter::undecodable_entries_go_to_dlq,
            dead_letter::oversized_message_moves_whole,
            dead_letter::moves_keep_the_payload_bytes,
            dead_letter::big_integers_and_key_order_survive_dead_letter_and_requeue,
            dead_letter::reserved_fields_are_refused,
            dead_letter::malformed_failure_records_are_shown,
            dead_letter::counts_past_i64_mean_all,
            dead_letter::undecodable_entry_in_dlq_is_handed_over_raw,
            dead_letter::peek_shows_undecodable_entries_raw,
            dead_letter::receive_as_decodes_typed_and_dead_letters_the_rest,
            leases::claim_stale_takes_over_with_delivery_counts,
            leases::claim_stale_respects_count_and_order,
            leases::claim_stale_skips_settled_messages,
            leases::claim_stale_drops_expired_messages,
            leases::claim_stale_moves_undecodable_to_dlq,
            leases::claim_stale_with_zero_count_claims_nothing,
            leases::claim_takes_redelivered_entries_alone,
            leases::extend_keeps_the_lease,
            leases::release_makes_message_claimable_later,
            leases::lease_calls_without_ids_count_zero,
            parked::release_past_the_visibility_timeout_waits_until_due,
            parked::a_parked_retry_follows_the_last_word_on_it,
            parked::consumer_retry_after_past_the_visibility_timeout,
            parked::a_ten_minute_retry_is_parked_with_its_due_time_and_count,
            parked::a_parked_retry_survives_its_consumers_death,
            retention::trim_history_removes_only_acknowledged_history,
            retention::trim_history_keeps_the_retention_window,
            retention::eddy_trim_history_covers_every_queue,
            retention::retention_by_length_keeps_the_newest_acknowledged,
            retention::consumer_loop_keeps_a_bounded_length,
            retention::max_length_rejects_sends_with_queue_full,
            retention::max_length_of_deleted_queue_is_not_found,
            retention::janitor_trims_only_acknowledged_history,
            retention::max_length_rejects_instead_of_dropping,
            retention::consumer_loop_trims_what_it_acknowledges,
            retention::consumer_loop_keeps_history_for_its_window,
            retention::idle_consumers_that_hold_nothing_are_forgotten,
            timing::expired_message_is_never_received,
            timing::sweep_expired_removes_and_counts,
            timing::unexpired_message_carries_its_ttl,
            timing::expired_pending_message_is_swept,
            timing::dead_lettered_message_loses_its_ttl,
            timing::delayed_message_is_invisible_until_due,
            timing::blocking_receive_wakes_for_delayed_message,
            timing::purge_removes_delayed_messages,
            transactions::transaction_commits_all,
            transactions::transaction_to_missing_queue_writes_nothing,
            transactions::transaction_rejects_bad_payload_at_send,
            transactions::empty_transaction_commits,
            transactions::transaction_with_delay_and_options,
            transactions::transaction_across_slots_is_refused_on_a_cluster,
            volume::no_send_trims_unconsumed_messages,
            consumer::poison_message_goes_to_dlq_after_max_deliveries,
            consumer::panic_is_retried_and_worker_survives,
            consumer::reject_dead_letters_at_once,
            consumer::crashed_consumers_messages_are_reclaimed,
            consumer::slow_handler_keeps_its_lease,
            consumer::hung_handler_times_out_and_is_retried,
            consumer::stop_drains_in_flight_work,
            consumer::ordering_key_serializes_same_key,
            consumer::cpu_bound_handlers_still_run_in_parallel [multi_thread],
            consumer::handler_panicking_before_its_future_exists_is_retried,
            consumer::ordering_key_covers_the_handlers_synchronous_part,
            reclaim::crashed_backlog_is_reclaimed_in_batches,
            reclaim::new_messages_flow_during_a_reclaim,
            bus::bus_routes_are_durable_and_shared,
            bus::replay_from_the_all_log,
            bus::all_log_is_trimmed_by_age,
            bus::all_log_is_bounded_by_its_publishers,
            bus::overlapping_publishes_each_get_their_own_result,
            bus::pipelined_publishes_from_one_task_keep_their_order,
            service::unknown_event_type_is_acknowledged,
            service::a_broken_event_is_dead_lettered_and_its_id_stays_free,
            service::service_context_sets_envelope,
            service::service_reject_and_retry_outcomes,
            metrics::service_metrics_count_a_known_workload,
            metrics::queue_gauges_read_every_queue,
            metrics::queue_totals_count_sends_and_first_deliveries,
            metrics::consumer_loop_and_expiry_counters,
            metrics::service_serves_its_metrics_endpoint,
            webhook::request_reply,
            webhook::thousand_concurrent_requests,
            webhook::timeout_then_late_reply_is_dropped,
            webhook::handler_errors_are_retried_then_dead_lettered,
            webhook::process_messages_by_hand,
            faults::row08_handler_panics,
            faults::row09_handler_slower_than_visibility_timeout,
            faults::row10_poison_message,
            faults::row12_undecodable_entries,
            faults::row13_oversized_payload,
            faults::row14_malformed_ids,
            faults::row15_unknown_event_type,
            faults::row18_ttl_passes_unswept,
        ] }
    };
}

/// Expand to one `#[tokio::test]` per conformance case, for the engine that
/// `$ctor` opens. `$ctor` is an async fn (or closure) taking the case name
/// (`&'static str`) and returning `Option<Harness>`; `None` skips the case
/// (only for an engine that cannot run here, e.g. no `redis-server` outside
/// CI: the constructor must print why).
#[macro_export]
macro_rules! conformance_tests {
    ($ctor:expr) => {
        $crate::__conformance_cases!(($crate::conformance_tests) @tests ($ctor));
    };
    (@tests ($ctor:expr) [$($module:ident :: $case:ident $([$runtime:ident])?),* $(,)?]) => {
        $(
            $crate::conformance_tests!(@test ($ctor) $module $case $($runtime)?);
        )*
    };
    (@test ($ctor:expr) $module:ident $case:ident) => {
        #[::tokio::test]
        async fn $case() {
            $crate::conformance_tests!(@body ($ctor) $module $case);
        }
    };
    (@test ($ctor:expr) $module:ident $case:ident multi_thread) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            $crate::conformance_tests!(@body ($ctor) $module $case);
        }
    };
    (@body ($ctor:expr) $module:ident $case:ident) => {
        let name = concat!(stringify!($module), "::", stringify!($case));
        let Some(harness) = ($ctor)(name).await else {
            return;
        };
        let result = $crate::conformance::$module::$case(&harness).await;
        harness.report(result);
    };
}

macro_rules! all_cases {
    (@all [$($module:ident :: $case:ident $([$runtime:ident])?),* $(,)?]) => {
        /// Every case of the suite, by name (`module::case`), with the
        /// runtime it needs.
        pub const ALL: &[Case] = &[
            $(Case {
                name: concat!(stringify!($module), "::", stringify!($case)),
                run: |h| Box::pin($module::$case(h)),
                runtime: all_cases!(@runtime $($runtime)?),
            }),*
        ];
    };
    (@runtime) => { Runtime::CurrentThread };
    (@runtime multi_thread) => { Runtime::MultiThread };
}

crate::__conformance_cases!((all_cases) @all);

// ---- helpers shared by the cases ----

/// The payload `{"n": n}`.
pub(crate) fn numbered(n: u64) -> Value {
    json!({ "n": n })
}

/// Send `{"n": from}` .. `{"n": to - 1}` one by one.
pub(crate) async fn send_numbered(
    q: &Queue,
    range: std::ops::Range<u64>,
) -> eddy::Result<Vec<EntryId>> {
    let mut ids = Vec::new();
    for n in range {
        ids.push(q.send(&numbered(n)).await?);
    }
    Ok(ids)
}

/// The `n` field of each message.
pub(crate) fn ns(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| {
            m.data
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("message without `n`: {m:?}"))
        })
        .collect()
}

/// The ids of messages.
pub(crate) fn ids(messages: &[Message]) -> Vec<EntryId> {
    messages.iter().map(|m| m.id).collect()
}

/// Receive options: `count` messages for `consumer`, no blocking.
pub(crate) fn take(count: usize, consumer: &str) -> Receive {
    Receive::new().count(count).consumer(consumer)
}

/// Assert that `result` failed with `kind`.
#[track_caller]
pub(crate) fn assert_kind<T: fmt::Debug>(result: eddy::Result<T>, kind: ErrorKind) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "wrong error kind: {e}"),
        Ok(v) => panic!("expected an error of kind {kind:?}, got Ok({v:?})"),
    }
}

/// Seconds since the Unix epoch on this machine.
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Assert a float epoch timestamp is within `slack` seconds of now.
#[track_caller]
pub(crate) fn assert_recent(ts: f64, slack: f64) {
    let now = now_secs();
    assert!(
        (now - slack..=now + slack).contains(&ts),
        "timestamp {ts} is not within {slack}s of now ({now})"
    );
}

// ---- one runner for a shared server ----

/// What [`run_all`] found, case by case.
#[derive(Debug, Default)]
pub struct SuiteReport {
    /// Cases that passed.
    pub passed: Vec<&'static str>,
    /// Cases that did not apply, with the reason.
    pub not_applicable: Vec<(&'static str, &'static str)>,
    /// Cases that failed or panicked, with the message.
    pub failed: Vec<(&'static str, String)>,
}

/// The longest one case may take in [`run_all`] before it counts as failed.
const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs every case of [`ALL`] against the engine at `url`, `parallel` cases
/// at a time, each on its own runtime (of the kind the case asks for) and
/// under its own prefix. For a topology too costly to start once per case (a Redis
/// Cluster, a Sentinel deployment): the server is shared, the prefixes keep
/// the cases apart. A case's panic is caught and reported as its failure.
pub fn run_all(engine_name: &str, url: &str, parallel: usize) -> SuiteReport {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let report = std::sync::Mutex::new(SuiteReport::default());
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = ALL.get(index) else { return };
                let outcome = run_one(engine_name, url, case);
                let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(Outcome::Passed) => report.passed.push(case.name),
                    Ok(Outcome::NotApplicable(why)) => {
                        report.not_applicable.push((case.name, why));
                    }
                    Err(why) => {
                        eprintln!("conformance {} on {engine_name} FAILED: {why}", case.name);
                        report.failed.push((case.name, why));
                    }
                }
            });
        }
    });
    report.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn run_one(engine_name: &str, url: &str, case: &Case) -> Result<Outcome, String> {
    let engine_name = engine_name.to_owned();
    let url = url.to_owned();
    let case = *case;
    // A thread per case, so that a panic inside the case (an assertion)
    // is its failure and nothing else's.
    let joined = std::thread::spawn(move || {
        let runtime = match case.runtime {
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
        runtime.block_on(async {
            let harness = Harness::open(&engine_name, &url, case.name)
                .await
                .map_err(|e| format!("cannot open {url}: {e}"))?;
            match tokio::time::timeout(CASE_TIMEOUT, (case.run)(&harness)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("did not finish within {CASE_TIMEOUT:?}")),
            }
        })
    })
    .join();
    match joined {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned())),
    }
}
