//! A small TCP proxy for network-fault tests: it sits between a client and a
//! server (usually a [`RedisServer`](crate::RedisServer)) and can cut, freeze
//! or refuse connections, or swallow a reply, on command.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use eddy_testkit::{proxy::Proxy, RedisServer};
//!
//! let server = RedisServer::start()?;
//! let proxy = Proxy::start(("127.0.0.1", server.port())).await?;
//! let mq = eddy::Eddy::open(&proxy.url()).await.map_err(std::io::Error::other)?;
//! let (q, _) = mq.create_queue_pair("jobs").await.map_err(std::io::Error::other)?;
//!
//! proxy.cut(); // reset every open connection: the next command fails...
//! let _ = q.send(&serde_json::json!({"n": 1})).await;
//! // ...and the client reconnects through the proxy.
//! assert!(proxy.connections() >= 1);
//! # Ok(())
//! # }
//! ```
//!
//! Controls:
//! - [`Proxy::cut`] resets (RST) every current connection, both sides;
//! - [`Proxy::pause`] / [`Proxy::resume`] stop and restart forwarding bytes in
//!   both directions without closing anything (a partition or a hung peer);
//! - [`Proxy::drop_replies`] forwards requests but swallows the next `n`
//!   replies, resetting each connection whose reply it swallowed (the client
//!   never learns the outcome of a request the server carried out);
//! - [`Proxy::refuse`] / [`Proxy::allow`] make new connections fail at once;
//! - counters: connections accepted, bytes forwarded each way.
//!
//! The proxy and every connection through it stop when it is dropped.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{lookup_host, TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;

/// Size of one forwarding read.
const CHUNK: usize = 64 * 1024;

/// A TCP proxy on 127.0.0.1 (a free port) forwarding to one target address.
///
/// Must be started inside a tokio runtime; its tasks run on that runtime and
/// end when the proxy is dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    /// `true` while forwarding is paused.
    paused: watch::Sender<bool>,
    /// Bumped by `cut`: every connection older than the new value resets.
    generation: watch::Sender<u64>,
    /// Set on drop: everything stops.
    closed: watch::Sender<bool>,
    refusing: AtomicBool,
    drop_replies: AtomicU64,
    accepted: AtomicU64,
    active: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    dropped_replies: AtomicU64,
}

/// How one connection ended.
enum End {
    /// A side closed or failed: close the other one normally.
    Closed,
    /// `cut`, a swallowed reply, or the proxy's drop: reset both sides.
    Reset,
}

impl Proxy {
    /// Listen on `127.0.0.1:0` and forward every connection to `target`.
    ///
    /// # Errors
    ///
    /// If `target` does not resolve or the listener cannot be bound.
    pub async fn start(target: impl ToSocketAddrs) -> io::Result<Self> {
        let target = lookup_host(target)
            .await?
            .next()
            .ok_or_else(|| io::Error::other("proxy target resolves to no address"))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            paused: watch::channel(false).0,
            generation: watch::channel(0).0,
            closed: watch::channel(false).0,
            refusing: AtomicBool::new(false),
            drop_replies: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            dropped_replies: AtomicU64::new(0),
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// A Redis URL through the proxy: `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.addr.port())
    }

    /// Reset (RST) every connection open now, on both sides. Later
    /// connections are forwarded normally.
    pub fn cut(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Stop forwarding bytes in both directions, keeping every connection
    /// open: requests and replies wait inside the proxy (as on a partitioned
    /// or frozen link). New connections are accepted and paused too.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Forward again after [`Proxy::pause`], delivering what waited.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// Whether forwarding is paused.
    pub fn is_paused(&self) -> bool {
        *self.shared.paused.borrow()
    }

    /// Swallow the next `n` replies: when the server answers on a connection,
    /// the answer is discarded and that connection is reset, so the request
    /// reached the server (and was carried out) but the client only sees a
    /// broken connection. Replaces any count still armed.
    pub fn drop_replies(&self, n: u64) {
        self.shared.drop_replies.store(n, Ordering::SeqCst);
    }

    /// How many replies [`Proxy::drop_replies`] has swallowed so far.
    pub fn dropped_replies(&self) -> u64 {
        self.shared.dropped_replies.load(Ordering::SeqCst)
    }

    /// Make new connections fail: each one is accepted and reset at once, so
    /// a client sees its connection refused or reset before any reply.
    /// Connections already open are not touched (see [`Proxy::cut`]).
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
    }

    /// Accept and forward new connections again after [`Proxy::refuse`].
    pub fn allow(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// Connections accepted and forwarded so far (refused ones not counted).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.to_server.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut closed = shared.closed.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else {
            continue; // e.g. too many open files: keep serving the others
        };
        if shared.refusing.load(Ordering::SeqCst) {
            reset(&client);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connection(client, shared.clone()));
    }
}

/// Drop a socket with SO_LINGER 0, so the peer gets a reset.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    let born = *shared.generation.borrow();
    let mut generation = shared.generation.subscribe();
    let mut closed = shared.closed.subscribe();
    let Ok(mut server) = TcpStream::connect(shared.target).await else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.active.fetch_add(1, Ordering::SeqCst);
    let end = {
        let (mut client_rx, mut client_tx) = client.split();
        let (mut server_rx, mut server_tx) = server.split();
        let up = pump(&shared, &mut client_rx, &mut server_tx, Direction::ToServer);
        let down = pump(&shared, &mut server_rx, &mut client_tx, Direction::ToClient);
        // A cut wins over bytes that a resume released at the same moment.
        tokio::select! {
            biased;
            _ = generation.wait_for(|g| *g != born) => End::Reset,
            _ = closed.wait_for(|c| *c) => End::Reset,
            end = up => end,
            end = down => end,
        }
    };
    if let End::Reset = end {
        reset(&client);
        reset(&server);
    }
    drop((client, server));
    shared.active.fetch_sub(1, Ordering::SeqCst);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// Copy bytes one way until a side closes, honouring pause and
/// `drop_replies`.
async fn pump(
    shared: &Shared,
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    direction: Direction,
) -> End {
    let mut paused = shared.paused.subscribe();
    let mut buf = vec![0; CHUNK];
    loop {
        // Do not even read while paused: a paused link holds bytes in the
        // kernel buffers, as a frozen peer would.
        if paused.wait_for(|p| !*p).await.is_err() {
            return End::Reset;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        if direction == Direction::ToClient && take_one(&shared.drop_replies) {
            shared.dropped_replies.fetch_add(1, Ordering::SeqCst);
            return End::Reset;
        }
        // Bytes read just before a pause wait until the resume.
        if paused.wait_for(|p| !*p).await.is_err() {
            return End::Reset;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
        let counter = match direction {
            Direction::ToServer => &shared.to_server,
            Direction::ToClient => &shared.to_client,
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Decrement `counter` if it is above zero; whether it was.
fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server: returns what it reads.
    async fn echo() -> io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut buf = vec![0; msg.len()];
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
        Ok(buf)
    }

    #[tokio::test]
    async fn forwards_cuts_pauses_refuses_and_drops() -> io::Result<()> {
        let proxy = Proxy::start(echo().await?).await?;
        let mut a = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(roundtrip(&mut a, b"ping").await?, b"ping");
        assert_eq!((proxy.bytes_to_server(), proxy.bytes_to_client()), (4, 4));

        proxy.pause();
        assert!(roundtrip(&mut a, b"held").await.is_err(), "paused");
        proxy.resume();
        let mut buf = [0; 4];
        a.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"held", "delivered after the resume");

        proxy.cut();
        let mut one = [0; 1];
        let after_cut = tokio::time::timeout(Duration::from_secs(2), a.read(&mut one)).await;
        assert!(
            matches!(after_cut, Ok(Ok(0) | Err(_))),
            "cut closes: {after_cut:?}"
        );

        let mut b = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(roundtrip(&mut b, b"again").await?, b"again");
        proxy.drop_replies(1);
        assert!(roundtrip(&mut b, b"lost").await.is_err());
        assert_eq!(proxy.dropped_replies(), 1);

        proxy.refuse();
        let mut c = TcpStream::connect(proxy.addr()).await?;
        assert!(roundtrip(&mut c, b"no").await.is_err(), "refused");
        proxy.allow();
        let mut d = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(roundtrip(&mut d, b"yes").await?, b"yes");
        assert_eq!(proxy.connections(), 3);
        Ok(())
    }
}
