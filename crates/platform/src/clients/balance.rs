//! A channel balanced over the replicas of a peer: power of two choices (tower's p2c, by the
//! number of calls in flight) over the replicas that have a working connection.
//!
//! Why not tonic's `Channel::balance_channel`: it wraps every endpoint in a lazy connection that
//! reports itself ready even after its connection attempt failed (the error is kept and returned
//! by the next call), so a replica that went away keeps being picked and every pick fails. Here
//! each replica is a [`Replica`]: it connects eagerly, and is *not ready* while it has no
//! connection — while connecting, and while it waits (with back-off) to try again after a
//! refused connection. Its connector watches the socket, so a connection the replica closed
//! (shutdown, maximum connection age, crash) takes it out of the choice before the next call
//! rather than after a failed one. The balancer only ever picks ready replicas.
//!
//! When no replica is ready and none is even connecting, calls fail at once with UNAVAILABLE
//! instead of waiting, as a single channel to a peer that is down does.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::BoxError;
use tower::Service;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Request = http::Request<Body>;
type Response = http::Response<Body>;
type ResponseFuture = BoxFuture<Result<Response, BoxError>>;

/// A cloneable handle on a balancer running in its own task; the task (and the resolver that
/// feeds it) ends when the last handle is dropped.
pub(crate) type BalancedChannel = Buffer<Request, ResponseFuture>;

/// Calls that may wait for a replica at once (as tonic's channels).
const BUFFER: usize = 1024;
/// The first wait before connecting again to a replica that refused; it doubles up to
/// [`MAX_BACKOFF`] and starts over once a connection succeeds.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the replicas of one balancer tell the balancer as a whole.
#[derive(Debug)]
pub(crate) struct Census {
    /// The peer URL, for messages.
    target: String,
    /// Replicas that are connected or connecting (not waiting after a refusal).
    hopeful: AtomicUsize,
    /// Whether the replica set is known (the first resolution ran).
    resolved: AtomicBool,
}

impl Census {
    pub(crate) fn new(target: &str) -> Arc<Self> {
        Arc::new(Self {
            target: target.to_string(),
            hopeful: AtomicUsize::new(0),
            resolved: AtomicBool::new(false),
        })
    }

    /// No call can be served soon: the replicas are known and none is connected or connecting.
    fn hopeless(&self) -> bool {
        self.resolved.load(Ordering::Acquire) && self.hopeful.load(Ordering::Acquire) == 0
    }
}

/// Counts a replica as hopeful while it lives.
#[derive(Debug)]
struct Hope(Arc<Census>);

impl Hope {
    fn new(census: &Arc<Census>) -> Self {
        census.hopeful.fetch_add(1, Ordering::AcqRel);
        Self(census.clone())
    }
}

impl Drop for Hope {
    fn drop(&mut self) {
        self.0.hopeful.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a replica's connections are dialled.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dial {
    /// This address, whatever the endpoint's host (a resolved `dns:` address: the endpoint
    /// keeps the DNS name for the `:authority` and the TLS server name).
    Address(SocketAddr),
    /// The endpoint's host and port (a list entry).
    Host,
}

/// One replica of a peer, as the balancer sees it: ready only while it has a connection.
pub(crate) struct Replica {
    endpoint: Endpoint,
    dial: Dial,
    state: State,
    backoff: Duration,
    census: Arc<Census>,
    /// Told when a connection attempt fails (the resolver then looks again soon).
    unreachable: Option<Arc<Notify>>,
}

enum State {
    Connecting {
        connecting: BoxFuture<Result<(Channel, Arc<AtomicBool>), tonic::transport::Error>>,
        _hope: Hope,
    },
    Connected {
        channel: Channel,
        /// Set once the connection closed or failed: connect afresh before the next call.
        closed: Arc<AtomicBool>,
        _hope: Hope,
    },
    Waiting(Pin<Box<tokio::time::Sleep>>),
}

impl Replica {
    pub(crate) fn new(
        endpoint: Endpoint,
        dial: Dial,
        census: Arc<Census>,
        unreachable: Option<Arc<Notify>>,
    ) -> Self {
        let state = State::Connecting {
            connecting: connect(&endpoint, dial),
            _hope: Hope::new(&census),
        };
        Self {
            endpoint,
            dial,
            state,
            backoff: FIRST_BACKOFF,
            census,
            unreachable,
        }
    }

    fn connect_again(&mut self) {
        self.state = State::Connecting {
            connecting: connect(&self.endpoint, self.dial),
            _hope: Hope::new(&self.census),
        };
    }

    fn describe(&self) -> String {
        match self.dial {
            Dial::Address(addr) => addr.to_string(),
            Dial::Host => self.endpoint.uri().to_string(),
        }
    }
}

/// Connects to the replica once (TCP, TLS, HTTP/2); the channel's connector flags its
/// connection when it closes.
fn connect(
    endpoint: &Endpoint,
    dial: Dial,
) -> BoxFuture<Result<(Channel, Arc<AtomicBool>), tonic::transport::Error>> {
    let endpoint = endpoint.clone();
    Box::pin(async move {
        let closed = Arc::new(AtomicBool::new(false));
        let connector = Connector {
            dial,
            closed: closed.clone(),
        };
        let channel = endpoint.connect_with_connector(connector).await?;
        Ok((channel, closed))
    })
}

impl Service<Request> for Replica {
    type Response = Response;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Connecting { connecting, .. } => {
                    match ready!(connecting.as_mut().poll(cx)) {
                        Ok((channel, closed)) => {
                            tracing::debug!(peer = %self.census.target, replica = %self.describe(), "connected");
                            self.backoff = FIRST_BACKOFF;
                            let hope = Hope::new(&self.census);
                            self.state = State::Connected {
                                channel,
                                closed,
                                _hope: hope,
                            };
                        }
                        Err(error) => {
                            tracing::debug!(
                                peer = %self.census.target,
                                replica = %self.describe(),
                                error = %crate::error::ErrorChain(&error),
                                retry_in = ?self.backoff,
                                "replica unreachable"
                            );
                            self.state = State::Waiting(Box::pin(tokio::time::sleep(self.backoff)));
                            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                            if let Some(unreachable) = &self.unreachable {
                                unreachable.notify_one();
                            }
                        }
                    }
                }
                State::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.connect_again();
                }
                State::Connected {
                    channel, closed, ..
                } => {
                    if closed.load(Ordering::Acquire) {
                        tracing::debug!(peer = %self.census.target, replica = %self.describe(), "connection closed; connecting again");
                        self.connect_again();
                        continue;
                    }
                    match ready!(channel.poll_ready(cx)) {
                        Ok(()) => return Poll::Ready(Ok(())),
                        Err(_) => self.connect_again(),
                    }
                }
            }
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let State::Connected {
            channel, closed, ..
        } = &mut self.state
        else {
            return Box::pin(async { Err("replica called before it was ready".into()) });
        };
        let closed = closed.clone();
        let response = channel.call(request);
        Box::pin(async move {
            response.await.map_err(|error| {
                // The call failed below gRPC (reset, refused, broken connection): connect
                // afresh before this replica serves again. A slow answer is not a broken
                // connection.
                if !caused_by::<tonic::TimeoutExpired>(&error) {
                    closed.store(true, Ordering::Release);
                }
                error.into()
            })
        })
    }
}

fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<E>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Dials a replica and watches the connection: [`Watched`] flags `closed` when hyper lets go
/// of the socket (the connection ended) and when dialling fails.
#[derive(Clone, Debug)]
struct Connector {
    dial: Dial,
    closed: Arc<AtomicBool>,
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Watched>;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<TokioIo<Watched>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (dial, closed) = (self.dial, self.closed.clone());
        Box::pin(async move {
            let stream = match dial {
                Dial::Address(addr) => TcpStream::connect(addr).await,
                Dial::Host => {
                    let host = uri.host().unwrap_or_default();
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                        Some("https") => 443,
                        _ => 80,
                    });
                    TcpStream::connect((host, port)).await
                }
            };
            let stream = stream
                .and_then(|stream| stream.set_nodelay(true).map(|()| stream))
                .inspect_err(|_| closed.store(true, Ordering::Release))?;
            Ok(TokioIo::new(Watched { stream, closed }))
        })
    }
}

/// A replica's socket that flags its channel when it goes.
#[derive(Debug)]
struct Watched {
    stream: TcpStream,
    closed: Arc<AtomicBool>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A change of the replica set, from whoever knows it (the resolver, or the list).
pub(crate) enum Update {
    /// A replica appeared (or replaces the one of that key).
    Insert(String, Replica),
    /// A replica is gone: it leaves once its calls in flight are done.
    Remove(String),
    /// The first look-up is done: an empty set from now on means "no replica".
    Resolved,
}

/// The balancer's view of the updates (tower's `Discover`).
struct Changes {
    updates: mpsc::Receiver<Update>,
    census: Arc<Census>,
}

type Loaded = PendingRequests<Replica, CompleteOnResponse>;

impl Stream for Changes {
    type Item = Result<Change<String, Loaded>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.updates.poll_recv(cx) {
                Poll::Ready(Some(Update::Insert(key, replica))) => {
                    Poll::Ready(Some(Ok(Change::Insert(
                        key,
                        PendingRequests::new(replica, CompleteOnResponse::default()),
                    ))))
                }
                Poll::Ready(Some(Update::Remove(key))) => {
                    Poll::Ready(Some(Ok(Change::Remove(key))))
                }
                Poll::Ready(Some(Update::Resolved)) => {
                    self.census.resolved.store(true, Ordering::Release);
                    continue;
                }
                // A fixed list sends everything at once and hangs up: the set stays as it is.
                Poll::Ready(None) | Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// The balancer, failing calls at once while no replica is connected or connecting.
struct FailFast {
    inner: Balance<Changes, Request>,
    census: Arc<Census>,
    reject: bool,
}

impl Service<Request> for FailFast {
    type Response = Response;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.reject = false;
        match self.inner.poll_ready(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending if self.census.hopeless() => {
                self.reject = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if std::mem::take(&mut self.reject) {
            let status = tonic::Status::unavailable(format!(
                "no replica of {} is reachable",
                self.census.target
            ));
            return Box::pin(async move { Err(Box::new(status) as BoxError) });
        }
        Box::pin(self.inner.call(request))
    }
}

/// A balancer over the replicas `updates` announce, running in its own task.
pub(crate) fn spawn(updates: mpsc::Receiver<Update>, census: Arc<Census>) -> BalancedChannel {
    let changes = Changes {
        updates,
        census: census.clone(),
    };
    let balancer = FailFast {
        inner: Balance::new(changes),
        census,
        reject: false,
    };
    let (channel, worker) = Buffer::pair(balancer, BUFFER);
    tokio::spawn(worker);
    channel
}
