//! order-service's HTTP API (axum), for the shop run as separate processes
//! (`eddy shop order-service --listen ADDR`).
//!
//! | request | answer |
//! |---|---|
//! | `POST /orders` with `{"user_id", "items": [{"product_id", "name", "price", "quantity"}]}` | 201 `{"order_id", "status", "total"}` and `Location: /orders/ID` |
//! | `GET /orders/{id}` | 200 the [`Order`] as JSON; 404 if this order-service does not know it |
//! | `GET /orders` (optionally `?status=shipped`) | 200 `{"count", "by_status", "orders"}` |
//!
//! `POST /orders` may carry its own `"order_id"` (1 to 200 characters, no
//! whitespace); without one the order gets a UUID. Prices are finite
//! numbers, 0 or more; quantities whole numbers, 1 or more; the total
//! (price × quantity summed, rounded to cents) must be finite too. Bad
//! input is answered 400 and nothing is published, an `order_id` that
//! exists 409, a body over 2 MB 413, an order whose `OrderCreatedEvent`
//! could not be published 503 (the order is then not kept). Every error is
//! `{"error": "..."}`; other paths answer 404, other methods 405, the same
//! way. Unknown fields are ignored.
//!
//! Slow clients are not waited for forever ([`HttpConfig`], given to
//! [`serve_with`]): a connection that has not sent a request's whole
//! headers 10 s after it opened, or after its previous answer, is closed
//! without an answer; a `POST /orders` whose body is not complete 30 s
//! after its headers is answered 408 and its connection closed.
//!
//! In `GET /orders`, `count` is the number of orders listed and `by_status`
//! counts every order in the store by status (all four statuses, zeros
//! included), whatever the filter.
//!
//! The orders are order-service's [`OrderStore`](crate::OrderStore), in the
//! process's memory: nothing is persisted. A restarted order-service starts
//! with an empty store; events that still arrive for orders it no longer
//! knows are retried and then adopted (see [`crate::orders`]), so those
//! orders reappear with their status but without user or items.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use eddy_shop::{Shop, ShopConfig, ShopService};
//!
//! let bus = eddy::bus::Bus::open("memory://").await.map_err(std::io::Error::other)?;
//! let shop = Shop::start_services(bus, ShopConfig::new(), &[ShopService::Order])
//!     .await
//!     .map_err(std::io::Error::other)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on http://{}", listener.local_addr()?);
//! eddy_shop::http::serve(listener, Arc::new(shop), async {}).await?; // returns at once: `async {}` is ready
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eddy::ErrorKind;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::orders::{Order, OrderStatus};
use crate::{Item, Shop};

/// The longest `user_id`, `order_id`, `product_id` and `name` accepted.
pub const MAX_ID_LEN: usize = 200;
/// The most items one order may have.
pub const MAX_ITEMS: usize = 1000;

/// A checked `POST /orders` body.
///
/// ```
/// use eddy_shop::http::NewOrder;
///
/// let ok = NewOrder::from_json(br#"{"user_id": "u1", "items": [
///     {"product_id": "P-1", "name": "Pen", "price": 2.5, "quantity": 2}]}"#).unwrap();
/// assert_eq!((ok.user_id.as_str(), ok.items.len(), ok.order_id), ("u1", 1, None));
///
/// let err = NewOrder::from_json(br#"{"user_id": "u1", "items": []}"#).unwrap_err();
/// assert_eq!(err, "`items` must not be empty: an order needs at least one item");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewOrder {
    /// The caller's order id, if it chose one.
    pub order_id: Option<String>,
    /// Who orders.
    pub user_id: String,
    /// What is ordered (at least one item).
    pub items: Vec<Item>,
}

impl NewOrder {
    /// Parse and check a body; the error says what is wrong, for a person.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        let Value::Object(obj) = value else {
            return Err(format!(
                "the body must be a JSON object {{\"user_id\", \"items\"}}, not {}",
                kind(&value)
            ));
        };
        let order_id = match obj.get("order_id") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let id = text(&obj, "order_id", "order_id")?;
                if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err("`order_id` must not contain whitespace".to_owned());
                }
                Some(id)
            }
        };
        let user_id = text(&obj, "user_id", "user_id")?;
        let items = match obj.get("items") {
            None | Some(Value::Null) => return Err("missing field `items`".to_owned()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(format!(
                    "`items` must be an array of items, not {}",
                    kind(other)
                ))
            }
        };
        if items.is_empty() {
            return Err("`items` must not be empty: an order needs at least one item".to_owned());
        }
        if items.len() > MAX_ITEMS {
            return Err(format!(
                "`items` has {} items; at most {MAX_ITEMS} are accepted",
                items.len()
            ));
        }
        let items = items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_item(i, item))
            .collect::<Result<Vec<_>, _>>()?;
        crate::checked_total(&items)?;
        Ok(Self {
            order_id,
            user_id,
            items,
        })
    }
}

fn parse_item(i: usize, item: &Value) -> Result<Item, String> {
    let Value::Object(obj) = item else {
        return Err(format!(
            "`items[{i}]` must be an object {{\"product_id\", \"name\", \"price\", \"quantity\"}}, not {}",
            kind(item)
        ));
    };
    let product_id = text(obj, "product_id", &format!("items[{i}].product_id"))?;
    let name = text(obj, "name", &format!("items[{i}].name"))?;
    let price = match obj.get("price") {
        None | Some(Value::Null) => return Err(format!("missing field `items[{i}].price`")),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|p| p.is_finite())
            .ok_or_else(|| format!("`items[{i}].price` is out of range ({n})"))?,
        Some(other) => {
            return Err(format!(
                "`items[{i}].price` must be a number, not {}",
                kind(other)
            ))
        }
    };
    if price < 0.0 {
        return Err(format!(
            "`items[{i}].price` must not be negative (got {price})"
        ));
    }
    let quantity = match obj.get("quantity") {
        None | Some(Value::Null) => return Err(format!("missing field `items[{i}].quantity`")),
        Some(Value::Number(n)) => {
            if let Some(q) = n.as_u64() {
                u32::try_from(q).map_err(|_| {
                    format!(
                        "`items[{i}].quantity` is too large (got {q}; at most {})",
                        u32::MAX
                    )
                })?
            } else if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) {
                return Err(format!(
                    "`items[{i}].quantity` must not be negative (got {n})"
                ));
            } else {
                return Err(format!(
                    "`items[{i}].quantity` must be a whole number (got {n})"
                ));
            }
        }
        Some(other) => {
            return Err(format!(
                "`items[{i}].quantity` must be a whole number, not {}",
                kind(other)
            ))
        }
    };
    if quantity == 0 {
        return Err(format!("`items[{i}].quantity` must be at least 1"));
    }
    Ok(Item::new(product_id, name, price, quantity))
}

/// A required, non-empty string field of at most [`MAX_ID_LEN`] characters.
fn text(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("missing field `{path}`")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("`{path}` must not be empty")),
        Some(Value::String(s)) if s.chars().count() > MAX_ID_LEN => Err(format!(
            "`{path}` is too long: at most {MAX_ID_LEN} characters"
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`{path}` must be a string, not {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
struct Api {
    shop: Arc<Shop>,
    body_read_timeout: Duration,
}

/// The API's routes, on `shop` (which must run order-service for the
/// orders to move on), with the default [`HttpConfig`].
pub fn router(shop: Arc<Shop>) -> Router {
    router_with(shop, HttpConfig::default())
}

/// The API's routes with `config`'s body read timeout (the header read
/// timeout is the server's: [`serve_with`]).
pub fn router_with(shop: Arc<Shop>, config: HttpConfig) -> Router {
    Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Api {
            shop,
            body_read_timeout: config.body_read_timeout,
        })
}

/// How long the server waits for a client (see [`serve_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// From the start of a connection (or the end of its previous answer)
    /// to the end of a request's headers.
    pub header_read_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// [`HttpConfig::header_read_timeout`] by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// [`HttpConfig::body_read_timeout`] by default.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpConfig {
    /// The defaults: 10 s for the headers, 30 s for the body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the header read timeout.
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Set the body read timeout.
    pub fn body_read_timeout(mut self, d: Duration) -> Self {
        self.body_read_timeout = d;
        self
    }
}

/// [`serve`] with the given timeouts: a connection that has not sent a
/// request's whole headers [`HttpConfig::header_read_timeout`] after it
/// opened (or after its previous answer) is closed; a `POST /orders` whose
/// body has not arrived [`HttpConfig::body_read_timeout`] after its
/// headers is answered 408 and its connection closed.
pub async fn serve_with<F>(
    listener: tokio::net::TcpListener,
    shop: Arc<Shop>,
    config: HttpConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router_with(shop, config);
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection gone before
                    // it was accepted: the listener itself still works.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            stream,
            app.clone(),
            config,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serve the API on `listener` until `shutdown` completes, then stop
/// accepting, let the requests in progress finish, and return. The
/// timeouts are [`HttpConfig`]'s defaults.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    shop: Arc<Shop>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with(listener, shop, HttpConfig::default(), shutdown).await
}

/// One connection, until the client or the header timeout closes it, or
/// (after `stopping`) its request in progress is answered.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    config: HttpConfig,
    mut stopping: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let conn = builder.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(app),
    );
    let mut conn = std::pin::pin!(conn);
    let mut told = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = stopping.wait_for(|s| *s), if !told => {
                told = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn create_order(State(api): State<Api>, req: Request) -> Response {
    let shop = api.shop;
    // The whole body within the deadline: a client that trickles it in
    // holds the connection no longer than a stalled one.
    let body = match tokio::time::timeout(api.body_read_timeout, Bytes::from_request(req, &()))
        .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(rejected)) => {
            return ApiError(rejected.status(), rejected.body_text()).into_response();
        }
        Err(_) => {
            let e = ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s; send it whole, right after the headers",
                    api.body_read_timeout.as_secs_f64()
                ),
            );
            // The rest of the body may still come: this connection is done.
            return ([(header::CONNECTION, "close")], e).into_response();
        }
    };
    let new = match NewOrder::from_json(&body) {
        Ok(new) => new,
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let total = crate::order_total(&new.items);
    let placed = match &new.order_id {
        Some(id) => shop
            .create_order_with_id(id, &new.user_id, new.items)
            .await
            .map(|()| id.clone()),
        None => shop.create_order(&new.user_id, new.items).await,
    };
    match placed {
        Ok(id) => {
            tracing::debug!(order_id = %id, total, "order created over HTTP");
            (
                StatusCode::CREATED,
                [(header::LOCATION, format!("/orders/{id}"))],
                Json(json!({ "order_id": id, "status": OrderStatus::Created, "total": total })),
            )
                .into_response()
        }
        Err(e) if e.kind() == ErrorKind::InvalidArgument => {
            ApiError(StatusCode::CONFLICT, e.message().to_owned()).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not publish a new order");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the order could not be published, so it was not kept: {}",
                    e.message()
                ),
            )
            .into_response()
        }
    }
}

async fn get_order(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.shop.orders().get(&id) {
        Some(order) => Json(order).into_response(),
        None => ApiError(
            StatusCode::NOT_FOUND,
            format!("order {id} is not known to this order-service"),
        )
        .into_response(),
    }
}

async fn list_orders(
    State(api): State<Api>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let shop = api.shop;
    let filter = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => match OrderStatus::ALL.into_iter().find(|st| st.as_str() == s) {
            Some(st) => Some(st),
            None => {
                return ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown status `{s}`: use one of {}",
                        OrderStatus::ALL.map(OrderStatus::as_str).join(", ")
                    ),
                )
                .into_response()
            }
        },
    };
    let all = shop.orders().all();
    // Counted from the same snapshot as the list, so the two agree.
    let mut by_status: Map<String, Value> = OrderStatus::ALL
        .iter()
        .map(|st| (st.as_str().to_owned(), Value::from(0u64)))
        .collect();
    for order in &all {
        let n = by_status
            .get(order.status.as_str())
            .and_then(Value::as_u64)
            .unwrap_or(0);
        by_status.insert(order.status.as_str().to_owned(), Value::from(n + 1));
    }
    let orders: Vec<Order> = all
        .into_iter()
        .filter(|o| filter.is_none_or(|st| o.status == st))
        .collect();
    Json(json!({ "count": orders.len(), "by_status": by_status, "orders": orders })).into_response()
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such resource: use POST /orders, GET /orders or GET /orders/{id}".to_owned(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: use POST /orders, GET /orders or GET /orders/{id}".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShopConfig;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn err(body: &str) -> String {
        NewOrder::from_json(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn bad_bodies_are_explained() {
        let item = r#"{"product_id": "P-1", "name": "Pen", "price": 2.5, "quantity": 2}"#;
        assert!(err("nope").starts_with("the body is not valid JSON"));
        assert!(err("[]").contains("must be a JSON object"));
        assert_eq!(
            err(&format!(r#"{{"items": [{item}]}}"#)),
            "missing field `user_id`"
        );
        assert_eq!(
            err(&format!(r#"{{"user_id": " ", "items": [{item}]}}"#)),
            "`user_id` must not be empty"
        );
        assert_eq!(
            err(&format!(r#"{{"user_id": 7, "items": [{item}]}}"#)),
            "`user_id` must be a string, not a number"
        );
        assert_eq!(err(r#"{"user_id": "u"}"#), "missing field `items`");
        assert_eq!(
            err(r#"{"user_id": "u", "items": {}}"#),
            "`items` must be an array of items, not an object"
        );
        assert_eq!(
            err(r#"{"user_id": "u", "items": [{"name": "Pen", "price": 1, "quantity": 1}]}"#),
            "missing field `items[0].product_id`"
        );
        assert_eq!(
            err(
                r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": -1, "quantity": 1}]}"#
            ),
            "`items[0].price` must not be negative (got -1)"
        );
        assert_eq!(
            err(
                r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": "1", "quantity": 1}]}"#
            ),
            "`items[0].price` must be a number, not a string"
        );
        assert_eq!(
            err(r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": 1}]}"#),
            "missing field `items[0].quantity`"
        );
        assert_eq!(
            err(
                r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": 1, "quantity": -2}]}"#
            ),
            "`items[0].quantity` must not be negative (got -2)"
        );
        assert_eq!(
            err(
                r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": 1, "quantity": 1.5}]}"#
            ),
            "`items[0].quantity` must be a whole number (got 1.5)"
        );
        assert_eq!(
            err(
                r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": 1, "quantity": 0}]}"#
            ),
            "`items[0].quantity` must be at least 1"
        );
        assert!(err(
            r#"{"user_id": "u", "items": [{"product_id": "p", "name": "Pen", "price": 1e308, "quantity": 2}]}"#
        )
        .starts_with("the order total is out of range"));
        assert_eq!(
            err(&format!(
                r#"{{"user_id": "u", "order_id": "a b", "items": [{item}]}}"#
            )),
            "`order_id` must not contain whitespace"
        );
        let ok = NewOrder::from_json(
            format!(
                r#"{{"user_id": "u", "order_id": "o-1", "extra": 1, "items": [{item}, {item}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.order_id.as_deref(), Some("o-1"));
        assert_eq!(ok.items[1], Item::new("P-1", "Pen", 2.5, 2));
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orders_over_http() {
        let bus = eddy::bus::Bus::open("memory://").await.unwrap();
        let shop = Arc::new(
            Shop::start(bus, ShopConfig::new().failure_rate(0.0))
                .await
                .unwrap(),
        );
        let app = router(shop.clone());

        let body = r#"{"user_id": "u1", "items": [{"product_id": "P-1", "name": "Pen", "price": 2.5, "quantity": 2}]}"#;
        let (status, created) = call(&app, "POST", "/orders", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["total"], 5.0);
        let id = created["order_id"].as_str().unwrap().to_owned();

        let with_id = r#"{"order_id": "o-7", "user_id": "u2", "items": [{"product_id": "P-2", "name": "Ink", "price": 1, "quantity": 1}]}"#;
        assert_eq!(
            call(&app, "POST", "/orders", with_id).await.0,
            StatusCode::CREATED
        );
        let (status, dup) = call(&app, "POST", "/orders", with_id).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(dup["error"].as_str().unwrap().contains("exists already"));

        let (status, bad) = call(&app, "POST", "/orders", r#"{"user_id": "u"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(bad["error"], "missing field `items`");

        shop.orders()
            .watch()
            .wait_for(|c| c.finished() == 2)
            .await
            .unwrap();
        let (status, order) = call(&app, "GET", &format!("/orders/{id}"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(order["status"], "shipped");
        assert_eq!(order["user_id"], "u1");
        assert_eq!(order["payment_status"], "succeeded");
        assert!(order["tracking_number"]
            .as_str()
            .unwrap()
            .starts_with("TRACK-"));
        assert!(order["created_at"].as_f64().is_some());

        let (status, list) = call(&app, "GET", "/orders", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["count"], 2);
        assert_eq!(
            list["by_status"],
            json!({"created": 0, "paid": 0, "payment_failed": 0, "shipped": 2})
        );
        let (_, filtered) = call(&app, "GET", "/orders?status=payment_failed", "").await;
        assert_eq!(
            (
                filtered["count"].as_u64(),
                filtered["by_status"]["shipped"].as_u64()
            ),
            (Some(0), Some(2))
        );
        assert_eq!(
            call(&app, "GET", "/orders?status=lost", "").await.0,
            StatusCode::BAD_REQUEST
        );

        assert_eq!(
            call(&app, "GET", "/orders/nope", "").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, "GET", "/nope", "").await.0,
            StatusCode::NOT_FOUND
        );
        let (status, e) = call(&app, "DELETE", "/orders", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(e["error"].is_string());

        drop(app);
        Arc::try_unwrap(shop).unwrap().stop().await.unwrap();
    }
}
