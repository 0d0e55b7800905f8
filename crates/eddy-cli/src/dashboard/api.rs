//! The JSON API under `/api` and `/metrics`: reads open to all, actions
//! behind [`super::guard::authorize`].

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use eddy::{EntryId, ErrorKind, Failure, Message, Queue, QueueInfo};

use super::guard::authorize;
use super::history::{counts, Counts};
use super::{Dashboard, SAMPLES_KEPT, SAMPLE_EVERY};
use crate::dlq_cmd::{requeue_picked, Pick};

/// An answer other than 200: its status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<eddy::Error> for ApiError {
    fn from(e: eddy::Error) -> Self {
        let status = match e.kind() {
            ErrorKind::QueueNotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidName | ErrorKind::InvalidMessageId | ErrorKind::InvalidArgument => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.message())
    }
}

impl From<crate::error::CliError> for ApiError {
    fn from(e: crate::error::CliError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.one_line())
    }
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// Anything under `/api` that is not a route.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such API route: see `eddy dashboard --help`",
    )
}

/// `GET /api/overview`.
pub async fn overview(State(d): State<Dashboard>) -> Json<Value> {
    Json(json!({
        "read_only": d.inner.token.is_none(),
        "prefix": d.mq().prefix(),
        "sample_every_ms": SAMPLE_EVERY.as_millis() as u64,
        "samples_kept": SAMPLES_KEPT,
    }))
}

/// A queue with its DLQ, as the table shows it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    name: &'a str,
    #[serde(flatten)]
    counts: Counts,
    ready_estimated: bool,
    consumers: usize,
    oldest_pending_age_ms: Option<u64>,
    error: Option<&'a str>,
}

/// `GET /api/queues`: every queue, its DLQ counted under it.
pub async fn queues(State(d): State<Dashboard>) -> ApiResult {
    let started = std::time::Instant::now();
    let listed = d.mq().list_queues().await?;
    let by_name = counts(&listed);
    let mut rows: BTreeMap<&str, Row<'_>> = BTreeMap::new();
    for q in &listed {
        let name = q.queue_name();
        let row = rows.entry(name).or_insert_with(|| Row {
            name,
            counts: by_name.get(name).copied().unwrap_or_default(),
            ready_estimated: false,
            consumers: 0,
            oldest_pending_age_ms: None,
            error: None,
        });
        if let Some(e) = &q.error {
            row.error = Some(e);
        }
        if !q.is_dlq {
            row.ready_estimated = q.lag_estimated;
            row.consumers = q.consumers.len();
            row.oldest_pending_age_ms = q.oldest_pending_age_ms;
        }
    }
    let rows: Vec<Row<'_>> = rows.into_values().collect();
    Ok(Json(json!({
        "queues": rows,
        "read_ms": started.elapsed().as_millis() as u64,
    })))
}

/// `GET /api/queues/NAME`: its info (consumers included) and its DLQ's.
pub async fn queue(State(d): State<Dashboard>, Path(name): Path<String>) -> ApiResult {
    let queue = d.mq().queue(&name).await?;
    let info = queue.info().await?;
    let dlq: Option<QueueInfo> = match d.mq().dead_letter_queue(&name).await {
        Ok(dlq) => Some(dlq.info().await?),
        Err(e) if e.kind() == ErrorKind::QueueNotFound => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Json(json!({ "queue": info, "dlq": dlq })))
}

/// A message as the API shows it: its data without `_failures`, which
/// come apart, the last one's reason first.
#[derive(Debug, Serialize)]
struct Shown {
    id: String,
    message_id: String,
    timestamp: f64,
    delivery_count: u64,
    reason: Option<String>,
    failures: Vec<Failure>,
    data: Box<RawValue>,
}

impl From<&Message> for Shown {
    fn from(m: &Message) -> Self {
        let failures = m.failures();
        Self {
            id: m.id.to_string(),
            message_id: m.message_id.clone(),
            timestamp: m.timestamp,
            delivery_count: m.delivery_count,
            reason: failures.last().map(|f| f.reason.clone()),
            failures,
            data: m.payload_json(&["_failures"]),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Page {
    count: Option<usize>,
    from: Option<String>,
}

/// The most messages one page shows.
const MAX_PAGE: usize = 1000;

/// `GET /api/queues/NAME/dlq?count=N&from=ID`: the DLQ's messages from
/// `from` (the oldest by default), and where the next page starts.
pub async fn dead_letters(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult {
    let count = page.count.unwrap_or(50).clamp(1, MAX_PAGE);
    let from = match page.from.as_deref() {
        Some(id) => id.parse::<EntryId>()?,
        None => EntryId::MIN,
    };
    let dlq = d.mq().dead_letter_queue(&name).await?;
    let mut messages = dlq.peek_from(from, count + 1).await?;
    let next = if messages.len() > count {
        messages.truncate(count);
        messages.last().map(|m| m.id.next().to_string())
    } else {
        None
    };
    let shown: Vec<Shown> = messages.iter().map(Shown::from).collect();
    Ok(Json(json!({
        "queue": name,
        "length": dlq.info().await?.length,
        "messages": shown,
        "next": next,
    })))
}

#[derive(Debug, Deserialize)]
pub struct Search {
    queue: Option<String>,
}

/// Queues searched at once by `GET /api/messages/ID`.
const SEARCH_AT_ONCE: usize = 32;

/// A search by the sender's message id reads at most this many entries of
/// each stream, oldest first (no index of message ids exists in Redis, so
/// it is a scan; the answer says when a stream was longer).
pub const SCAN_LIMIT: usize = 10_000;

/// Entries read per call of that scan.
const SCAN_PAGE: usize = 500;

/// What `GET /api/messages/ID` looks for.
#[derive(Debug, Clone)]
enum Wanted {
    /// A stream id (`1700000000000-0`): one lookup per stream.
    Entry(EntryId),
    /// The sender's `message_id` (`_metadata.id`, a uuid by default).
    MessageId(String),
}

/// `GET /api/messages/ID[?queue=NAME]`: the message with this stream id,
/// or with this sender's message id (a bounded scan, [`SCAN_LIMIT`]), in
/// that queue and its DLQ, or in every queue and DLQ.
pub async fn message(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
    Query(search): Query<Search>,
) -> ApiResult {
    let id = id.trim().to_owned();
    if id.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give a stream id (1700000000000-0) or a message id",
        ));
    }
    let wanted = match id.parse::<EntryId>() {
        Ok(entry) => Wanted::Entry(entry),
        Err(_) => Wanted::MessageId(id.clone()),
    };
    let names: Vec<String> = match search.queue {
        Some(q) => vec![q.clone(), format!("{q}:dlq")],
        None => d
            .mq()
            .list_queues()
            .await?
            .into_iter()
            .filter(|q| q.error.is_none())
            .map(|q| q.name)
            .collect(),
    };
    let found: Vec<(Vec<Value>, bool)> = futures::stream::iter(names)
        .map(|name| {
            let (d, wanted) = (d.clone(), wanted.clone());
            async move { find_in(&d, &name, &wanted).await }
        })
        .buffered(SEARCH_AT_ONCE)
        .try_collect()
        .await?;
    let truncated = found.iter().any(|(_, cut)| *cut);
    let found: Vec<Value> = found.into_iter().flat_map(|(f, _)| f).collect();
    if found.is_empty() {
        let what = match wanted {
            Wanted::Entry(_) => "stream id".to_owned(),
            Wanted::MessageId(_) if truncated => format!(
                "message id in the first {SCAN_LIMIT} entries of each stream (a longer one was not read to its end)"
            ),
            Wanted::MessageId(_) => "message id".to_owned(),
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no message with {what} {id}"),
        ));
    }
    Ok(Json(
        json!({ "id": id, "found": found, "scan_truncated": truncated }),
    ))
}

/// The messages `wanted` of queue (or `QUEUE:dlq`) `name`, and whether a
/// scan stopped at [`SCAN_LIMIT`] before the stream's end.
async fn find_in(
    d: &Dashboard,
    name: &str,
    wanted: &Wanted,
) -> Result<(Vec<Value>, bool), ApiError> {
    let (base, in_dlq) = match name.strip_suffix(":dlq") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let queue = if in_dlq {
        d.mq().dead_letter_queue(base).await
    } else {
        d.mq().queue(base).await
    };
    let queue: Queue = match queue {
        Ok(q) => q,
        Err(e) if e.kind() == ErrorKind::QueueNotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e.into()),
    };
    let shown = |m: &Message| json!({ "queue": base, "in_dlq": in_dlq, "message": Shown::from(m) });
    match wanted {
        Wanted::Entry(id) => {
            let first = queue.peek_from(*id, 1).await?;
            Ok((
                first.iter().filter(|m| m.id == *id).map(shown).collect(),
                false,
            ))
        }
        Wanted::MessageId(message_id) => {
            let mut out = Vec::new();
            let mut from = EntryId::MIN;
            let mut read = 0;
            while read < SCAN_LIMIT {
                let page = queue
                    .peek_from(from, SCAN_PAGE.min(SCAN_LIMIT - read))
                    .await?;
                read += page.len();
                out.extend(
                    page.iter()
                        .filter(|m| m.message_id == *message_id)
                        .map(shown),
                );
                match page.last() {
                    Some(last) if page.len() == SCAN_PAGE => from = last.id.next(),
                    _ => return Ok((out, false)),
                }
            }
            Ok((out, true))
        }
    }
}

/// `GET /api/routes`: each event type (`*` for all of them) and the
/// services it goes to.
pub async fn routes(State(d): State<Dashboard>) -> ApiResult {
    let routes = d.bus().await?.routes().await?;
    let routes: Vec<Value> = routes
        .into_iter()
        .map(|(event_type, services)| json!({ "event_type": event_type, "services": services }))
        .collect();
    Ok(Json(json!({ "routes": routes })))
}

#[derive(Debug, Deserialize)]
pub struct Series {
    queue: Option<String>,
}

/// `GET /api/throughput[?queue=NAME]`: the sampled counts, and the send
/// and settle rates of each interval between two samples, oldest first.
pub async fn throughput(State(d): State<Dashboard>, Query(s): Query<Series>) -> Json<Value> {
    let points = d.inner.history.series(s.queue.as_deref());
    let rates = d.inner.history.rates(s.queue.as_deref());
    Json(json!({
        "queue": s.queue,
        "every_ms": SAMPLE_EVERY.as_millis() as u64,
        "points": points,
        "rates": rates,
    }))
}

/// `GET /metrics`: every queue's gauges, read from the engine now.
pub async fn metrics(State(d): State<Dashboard>) -> Response {
    match d.inner.metrics.render().await {
        Ok(text) => ([(header::CONTENT_TYPE, eddy::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("# cannot read the queues: {}\n", e.message()),
        )
            .into_response(),
    }
}

/// An action's JSON body, extracted once the request may act
/// ([`authorize`]); an empty body is `{}`.
pub struct Action<T>(T);

impl<T: DeserializeOwned> FromRequest<Dashboard> for Action<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, d: &Dashboard) -> Result<Self, ApiError> {
        authorize(d, req.headers())?;
        let body = Bytes::from_request(req, d)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(body)
            .map(Action)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
    }
}

#[derive(Debug, Deserialize)]
pub struct Ids {
    ids: Vec<String>,
}

impl Ids {
    fn parse(&self) -> ApiResult<Vec<EntryId>> {
        if self.ids.is_empty() {
            return Err(ApiError::bad_request("give at least one id in \"ids\""));
        }
        self.ids
            .iter()
            .map(|s| s.trim().parse().map_err(ApiError::from))
            .collect()
    }
}

#[derive(Debug, Deserialize)]
pub struct Nothing {}

#[derive(Debug, Deserialize)]
pub struct Reason {
    reason: String,
    limit: Option<usize>,
}

/// `POST /api/queues/NAME/dlq/requeue {"ids": [...]}`.
pub async fn requeue(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    Action(ids): Action<Ids>,
) -> ApiResult {
    let ids = ids.parse()?;
    let n = d.mq().dead_letter_queue(&name).await?.requeue(&ids).await?;
    Ok(Json(json!({ "requeued": n })))
}

/// `POST /api/queues/NAME/dlq/requeue-all {}`.
pub async fn requeue_all(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    _: Action<Nothing>,
) -> ApiResult {
    let n = d.mq().dead_letter_queue(&name).await?.requeue_all().await?;
    Ok(Json(json!({ "requeued": n })))
}

/// `POST /api/queues/NAME/dlq/requeue-reason {"reason": TEXT}`: the
/// messages whose last failure's reason contains TEXT, as `eddy dlq
/// requeue --all --reason TEXT` picks them.
pub async fn requeue_reason(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    Action(reason): Action<Reason>,
) -> ApiResult {
    if reason.reason.is_empty() {
        return Err(ApiError::bad_request(
            "\"reason\" is empty: give the text to look for (requeue-all moves everything)",
        ));
    }
    let dlq = d.mq().dead_letter_queue(&name).await?;
    let pick = Pick {
        reason: Some(&reason.reason),
        limit: reason.limit.unwrap_or(usize::MAX),
        dry_run: false,
        progress: false,
    };
    let n = requeue_picked(&dlq, &pick).await?;
    Ok(Json(json!({ "requeued": n })))
}

/// `POST /api/queues/NAME/dlq/delete {"ids": [...]}`.
pub async fn delete_dead_letters(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    Action(ids): Action<Ids>,
) -> ApiResult {
    let ids = ids.parse()?;
    let n = d.mq().dead_letter_queue(&name).await?.delete(&ids).await?;
    Ok(Json(json!({ "deleted": n })))
}

/// `POST /api/queues/NAME/delete {"ids": [...]}`.
pub async fn delete_messages(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    Action(ids): Action<Ids>,
) -> ApiResult {
    let ids = ids.parse()?;
    let n = d.mq().queue(&name).await?.delete(&ids).await?;
    Ok(Json(json!({ "deleted": n })))
}
