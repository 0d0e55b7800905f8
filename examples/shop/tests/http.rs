//! order-service's HTTP API over real TCP connections: what it refuses and
//! how long it waits for a slow or stalled client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::bus::Bus;
use eddy_shop::http::HttpConfig;
use eddy_shop::{Shop, ShopConfig, ShopService};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The short timeouts the tests configure.
const HEADERS: Duration = Duration::from_millis(300);
const BODY: Duration = Duration::from_millis(300);
/// How long a test waits for the server to give up on a stalled client:
/// well past the timeouts, well short of a connection held forever.
const GIVE_UP: Duration = Duration::from_secs(5);

struct Server {
    addr: std::net::SocketAddr,
    shop: Arc<Shop>,
    bus: Bus,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let bus = Bus::open("memory://").await.unwrap();
        // order-service alone: an order it takes stays `created`, and every
        // event it publishes is on the bus's `all` log.
        let shop = Arc::new(
            Shop::start_services(bus.clone(), ShopConfig::new(), &[ShopService::Order])
                .await
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = HttpConfig::new()
            .header_read_timeout(HEADERS)
            .body_read_timeout(BODY);
        let task = tokio::spawn(eddy_shop::http::serve_with(
            listener,
            shop.clone(),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            shop,
            bus,
            stop: Some(stop),
            task,
        }
    }

    async fn published(&self) -> usize {
        self.bus
            .replay(std::time::UNIX_EPOCH, 100)
            .await
            .unwrap()
            .len()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(GIVE_UP, self.task)
            .await
            .expect("the server did not shut down")
            .unwrap()
            .unwrap();
    }
}

/// One request on a fresh connection; the status and the JSON body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(GIVE_UP, conn.read_to_end(&mut raw))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let json = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

/// Read until the server closes the connection (or `GIVE_UP` passes);
/// what it sent and how long that took.
async fn until_closed(conn: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + GIVE_UP).into(), conn.read(&mut buf)).await {
            Err(_) => panic!(
                "the server still holds the stalled connection after {GIVE_UP:?} (sent {:?})",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_total_is_not_finite_is_refused_and_nothing_is_published() {
    let server = Server::start().await;
    let item = |price: &str, quantity: &str| {
        format!(
            r#"{{"user_id": "u1", "items": [{{"product_id": "P-1", "name": "Pen", "price": {price}, "quantity": {quantity}}}]}}"#
        )
    };
    // 1e308 is a finite price; twice it is not a finite total.
    for (price, quantity) in [("1e308", "2"), ("1.7e308", "1000"), ("1e307", "100")] {
        let (status, body) = post(server.addr, "/orders", &item(price, quantity)).await;
        assert_eq!(status, 400, "price {price} × {quantity}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("total"), "{error}");
    }
    // Two lines, each finite, whose sum is not.
    let two = r#"{"user_id": "u1", "items": [
        {"product_id": "P-1", "name": "Pen", "price": 1.7e308, "quantity": 1},
        {"product_id": "P-2", "name": "Ink", "price": 1.7e308, "quantity": 1}]}"#;
    assert_eq!(post(server.addr, "/orders", two).await.0, 400);
    assert_eq!(server.published().await, 0);
    assert_eq!(server.shop.events_published(), 0);
    assert_eq!(server.shop.orders().counts().orders, 0);

    // An ordinary order still goes through, and is the one event published.
    let (status, body) = post(server.addr, "/orders", &item("2.5", "2")).await;
    assert_eq!((status, body["total"].as_f64()), (201, Some(5.0)), "{body}");
    assert_eq!(server.published().await, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    let server = Server::start().await;
    for partial in [
        "POST /ord",
        "POST /orders HTTP/1.1\r\nHost: shop\r\nContent-",
    ] {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(partial.as_bytes()).await.unwrap();
        let (_, after) = until_closed(&mut conn).await;
        assert!(after >= HEADERS - Duration::from_millis(50), "{after:?}");
    }
    // A connection that sends nothing at all is let go too.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    until_closed(&mut idle).await;
    assert_eq!(server.published().await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_body_gets_408() {
    let server = Server::start().await;
    let body = r#"{"user_id": "u1", "items": [{"product_id": "P-1", "name": "Pen", "price": 1, "quantity": 1}]}"#;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..20]).await.unwrap();
    let (got, after) = until_closed(&mut conn).await;
    assert!(after >= BODY - Duration::from_millis(50), "{after:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let json: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert!(json["error"].as_str().unwrap().contains("body"), "{json}");
    assert_eq!(server.published().await, 0);
    assert_eq!(server.shop.orders().counts().orders, 0);
    server.shutdown().await;
}
