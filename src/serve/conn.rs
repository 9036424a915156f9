//! Connections: the accept loop ([`Service::serve`]), per-connection timeouts and the cap, the
//! bounded shutdown, and the socket adapter that rewrites hyper's own bodiless error answers.

use super::*;

// ---- Connections ---------------------------------------------------------------------------------
//
// axum::serve gives no header timeout, no idle timeout, no connection cap, and waits without end
// for a connection whose request is half sent once shutdown starts. Its replacement below drives
// each connection with hyper's HTTP/1 server directly:
// * [`GuardedIo`], the socket adapter, enforces the read deadlines while no request is in the
//   handler (idle connection: `idle_timeout`; a request head: `header_timeout` from its first
//   byte), the write deadline (a client that stops reading its answer) and, at shutdown, closes
//   connections that hold a half-sent head; it also rewrites hyper's own bodiless 400/414/431;
// * [`StallBody`], the request body adapter, answers 408 when a body stops arriving (while a
//   request is in the handler the socket adapter sets no read deadline: the model's time is not
//   the client's);
// * [`ConnService`] tells the socket adapter when a request is in the handler and when its
//   response has been handed to the socket.

/// Refused connections and rewritten error answers are closed by lingering (see [`linger_close`]);
/// at most this many at once, beyond which they are closed at once.
pub(super) const MAX_LINGERING: usize = 64;
/// How long a lingering close waits for the client to finish sending.
pub(super) const LINGER: Duration = Duration::from_secs(1);

impl Service {
    /// Serves HTTP/1.1 on `listener` until `signal` resolves, then shuts down: stops accepting,
    /// closes idle connections and those holding a half-sent request head, waits up to
    /// `shutdown_timeout` for the requests in flight, cuts the connections still open, and waits
    /// for the model thread (which by then refuses the jobs still queued).
    pub async fn serve(self, listener: TcpListener, signal: impl Future<Output = ()>) -> ShutdownReport {
        let Service { router, model_thread, metrics, stop_model, cfg } = self;
        let limits = ConnLimits { header: cfg.header_timeout, idle: cfg.idle_timeout };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        if metrics.connections_open.load(Ordering::SeqCst) >= cfg.max_connections {
                            refuse(stream, &metrics, &lingering, cfg.max_connections);
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        metrics.connections_open.fetch_add(1, Ordering::SeqCst);
                        metrics.connections_accepted.fetch_add(1, Ordering::SeqCst);
                        let open = OpenConnection(metrics.clone());
                        conns.spawn(serve_connection(stream, router.clone(), open, limits, shutdown_rx.clone(), lingering.clone()));
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => {}
                    // Out of file descriptors or the like: give connections a moment to close.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        drop(listener);
        shutdown_tx.send_replace(true);
        let grace = tokio::time::sleep(cfg.shutdown_timeout);
        tokio::pin!(grace);
        let cut = loop {
            tokio::select! {
                next = conns.join_next() => if next.is_none() { break 0 },
                _ = &mut grace => {
                    let n = metrics.connections_open.load(Ordering::SeqCst);
                    conns.shutdown().await;
                    break n;
                }
            }
        };
        // No handler waits for the model any more: jobs still queued (of requests whose client left,
        // or that were cut) are refused, and the model thread ends after its batch at most.
        stop_model.store(true, Ordering::SeqCst);
        drop(router);
        let _ = tokio::task::spawn_blocking(move || model_thread.join()).await;
        ShutdownReport { cut }
    }
}

/// Keeps `mtt_connections_open` (also the count `max_connections` is checked against) while a
/// connection's task lives, however it ends.
pub(super) struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ConnLimits {
    pub(super) header: Duration,
    pub(super) idle: Duration,
}

/// One connection, until it closes or its task is aborted at the end of the grace period.
pub(super) async fn serve_connection(stream: TcpStream, router: Router, open: OpenConnection, limits: ConnLimits, mut shutdown: watch::Receiver<bool>, lingering: Arc<Semaphore>) {
    let metrics = open.0.clone();
    let conn = Arc::new(ConnShared::new());
    let io = GuardedIo::new(stream, conn.clone(), limits, metrics.clone(), lingering);
    let service = ConnService { router, conn: conn.clone(), body_timeout: limits.idle, metrics };
    let mut http = hyper::server::conn::http1::Builder::new();
    // No hyper timer: its header timeout runs from the end of the previous response (so it would
    // also be the keep-alive timeout); GuardedIo keeps both deadlines instead.
    http.max_header_size(MAX_HEADER_BYTES);
    let served = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(served);
    let mut signalled = false;
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            _ = shutdown.changed(), if !signalled => {
                signalled = true;
                conn.lock().shutting_down = true;
                // hyper closes an idle connection now and one with a request in flight after its
                // response; a half-sent head is closed by GuardedIo on hyper's next read.
                served.as_mut().graceful_shutdown();
            }
        }
    }
    drop(open);
}

/// Answers a connection over the cap with a 503 and closes it, without reading its request.
pub(super) fn refuse(stream: TcpStream, metrics: &Metrics, lingering: &Arc<Semaphore>, max: usize) {
    metrics.connections_refused.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({ "error": format!("too many open connections (the limit is {max}): retry shortly") }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A new socket's send buffer is empty: the answer fits (and if not, the client gets a close).
    let _ = stream.try_write(answer.as_bytes());
    linger_close(stream, lingering);
}

/// Closes a connection we answered without reading the whole request: shuts our sending side, then
/// reads and drops what the client still sends, until it closes or for [`LINGER`] at most. Closing
/// at once with unread bytes would make the kernel send a reset, which can destroy our answer in
/// the client's receive buffer before it reads it. At most [`MAX_LINGERING`] at once.
pub(super) fn linger_close(mut stream: TcpStream, lingering: &Arc<Semaphore>) {
    let (Ok(permit), Ok(rt)) = (lingering.clone().try_acquire_owned(), tokio::runtime::Handle::try_current()) else {
        return;
    };
    rt.spawn(async move {
        let _permit = permit;
        let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
        let drain = async {
            let mut buf = [0u8; 4096];
            loop {
                if stream.readable().await.is_err() {
                    break;
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

/// What a connection is doing, shared by its socket adapter, its service and its response bodies.
pub(super) struct ConnShared(Mutex<ConnPhase>);

pub(super) struct ConnPhase {
    /// Requests in the handler (HTTP/1: 0 or 1).
    pub(super) in_flight: usize,
    /// A response from the handler not yet wholly handed to the socket.
    pub(super) response_open: bool,
    /// That response's body has been dropped by hyper (so the next flush ends the response).
    pub(super) response_body_done: bool,
    /// Last byte read or written (or response from the handler).
    pub(super) last_activity: tokio::time::Instant,
    /// First byte of a request head not yet handed to the handler.
    pub(super) head_started: Option<tokio::time::Instant>,
    pub(super) shutting_down: bool,
}

impl ConnShared {
    fn new() -> Self {
        ConnShared(Mutex::new(ConnPhase {
            in_flight: 0,
            response_open: false,
            response_body_done: false,
            last_activity: tokio::time::Instant::now(),
            head_started: None,
            shutting_down: false,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnPhase> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The socket under hyper, with the connection's deadlines. Every deadline ends in an I/O error
/// (`TimedOut`), on which hyper drops the connection.
///
/// hyper answers a request it cannot parse by itself, with an empty body: 400 (bad request line
/// or header), 414 (target too long) or 431 (head over [`MAX_HEADER_BYTES`]); the handler never
/// sees it. Such an answer is recognised here as a `HTTP/1.1 4xx` head written while no response
/// of the handler is on its way, and replaced by the same status with a JSON body; the connection
/// is then closed (hyper closes it after such an answer anyway) by lingering, so that the client
/// can read the answer even while it is still sending its oversized head. A request hyper cannot
/// parse right after a pipelined response still in hyper's buffer keeps hyper's bodiless answer.
pub(super) struct GuardedIo {
    /// `None` only once dropped.
    pub(super) io: Option<TcpStream>,
    pub(super) conn: Arc<ConnShared>,
    pub(super) limits: ConnLimits,
    pub(super) metrics: Arc<Metrics>,
    pub(super) read_timer: Pin<Box<tokio::time::Sleep>>,
    pub(super) write_timer: Pin<Box<tokio::time::Sleep>>,
    /// The JSON answer that replaces hyper's bodiless one, and how much of it is written. Once
    /// set, whatever hyper writes is dropped.
    pub(super) replacement: Option<(Vec<u8>, usize)>,
    pub(super) lingering: Arc<Semaphore>,
}

impl GuardedIo {
    fn new(io: TcpStream, conn: Arc<ConnShared>, limits: ConnLimits, metrics: Arc<Metrics>, lingering: Arc<Semaphore>) -> Self {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        GuardedIo {
            io: Some(io),
            conn,
            limits,
            metrics,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            replacement: None,
            lingering,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.io.as_mut().expect("the stream is there until drop"))
    }

    /// When a read must have made progress by, and what the connection waits for then: nothing
    /// while a request is in the handler (its body has [`StallBody`]'s timer).
    fn read_deadline(&self) -> Option<(tokio::time::Instant, &'static str)> {
        let c = self.conn.lock();
        if c.in_flight > 0 {
            return None;
        }
        if c.shutting_down && c.head_started.is_some() && !c.response_open {
            return Some((c.last_activity.min(tokio::time::Instant::now()), "shutdown"));
        }
        // With a response on its way, nothing moving means the client does not read it.
        let idle = (c.last_activity + self.limits.idle, if c.response_open { "write" } else { "idle" });
        Some(match c.head_started {
            Some(t) if t + self.limits.header <= idle.0 => (t + self.limits.header, "header"),
            _ => idle,
        })
    }

    /// Registers the task for the read deadline without reading. hyper polls the socket for the
    /// next request head only when woken once a response is out (it re-polls by itself only when
    /// its own header timer is on), so the idle deadline of a kept-alive connection has to be armed
    /// from the write side; its wake-up makes hyper read, and the read fails with the timeout.
    fn arm_read_timer(&mut self, cx: &mut Context<'_>) {
        if let Some((at, _)) = self.read_deadline() {
            if self.read_timer.deadline() != at {
                self.read_timer.as_mut().reset(at);
            }
            let _ = self.read_timer.as_mut().poll(cx);
        }
    }

    fn timed_out(&self, waiting_for: &'static str) -> io::Error {
        if waiting_for != "shutdown" {
            self.metrics.observe_timeout(waiting_for);
        }
        io::Error::new(io::ErrorKind::TimedOut, format!("connection closed: {waiting_for} timeout"))
    }

    /// A write to the socket, timed out when the client reads nothing for `idle_timeout`.
    fn poll_socket_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.stream().poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.conn.lock().last_activity = tokio::time::Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = self.conn.lock().last_activity + self.limits.idle;
                if self.write_timer.deadline() != deadline {
                    self.write_timer.as_mut().reset(deadline);
                }
                if self.write_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.timed_out("write")));
                }
                Poll::Pending
            }
        }
    }

    /// Writes the rest of the replacement answer, if any.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = self.replacement.take() {
            if done >= bytes.len() {
                self.replacement = Some((bytes, done));
                break;
            }
            let polled = self.poll_socket_write(cx, &bytes[done..]);
            let n = match polled {
                Poll::Ready(Ok(0)) => {
                    self.replacement = Some((bytes, done));
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => n,
                other => {
                    self.replacement = Some((bytes, done));
                    return other.map_ok(|_| ());
                }
            };
            self.replacement = Some((bytes, done + n));
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's own answer to a request it could not parse, made JSON.
pub(super) fn json_error_answer(status: u16) -> Option<Vec<u8>> {
    let status = StatusCode::from_u16(status).ok().filter(StatusCode::is_client_error)?;
    let message = match status.as_u16() {
        400 => "malformed HTTP request: the request line or a header could not be parsed".to_string(),
        414 => "request target too long".to_string(),
        431 => format!("request head (request line and headers) over the limit of {MAX_HEADER_BYTES} bytes"),
        _ => status.canonical_reason().unwrap_or("client error").to_string(),
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    Some((head + &body).into_bytes())
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let deadline = this.read_deadline();
        if let Some((at, waiting_for)) = deadline {
            // Checked before reading: a client trickling bytes never lets a read wait.
            if tokio::time::Instant::now() >= at {
                return Poll::Ready(Err(this.timed_out(waiting_for)));
            }
        }
        let before = buf.filled().len();
        match this.stream().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = tokio::time::Instant::now();
                    let mut c = this.conn.lock();
                    c.last_activity = now;
                    if c.in_flight == 0 && c.head_started.is_none() {
                        c.head_started = Some(now);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some((at, waiting_for)) = deadline {
                    if this.read_timer.deadline() != at {
                        this.read_timer.as_mut().reset(at);
                    }
                    if this.read_timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(this.timed_out(waiting_for)));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() && (buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) {
            let hyper_answer = {
                let c = this.conn.lock();
                c.in_flight == 0 && !c.response_open
            };
            let status = buf.get(9..12).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse().ok());
            if let Some(answer) = status.filter(|_| hyper_answer).and_then(json_error_answer) {
                this.replacement = Some((answer, 0));
            }
        }
        if this.replacement.is_some() {
            std::task::ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_socket_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        std::task::ready!(this.stream().poll_flush(cx))?;
        {
            let mut c = this.conn.lock();
            if c.response_body_done {
                // hyper flushes after writing: the handler's response is wholly out.
                c.response_open = false;
                c.response_body_done = false;
            }
        }
        this.arm_read_timer(cx);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        this.stream().poll_shutdown(cx)
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        if let Some(stream) = self.io.take() {
            if self.replacement.is_some() {
                linger_close(stream, &self.lingering);
            }
        }
    }
}

/// The router as the connection's hyper service: marks the request in the handler, times out its
/// body, and follows its response until hyper has handed it to the socket.
pub(super) struct ConnService {
    pub(super) router: Router,
    pub(super) conn: Arc<ConnShared>,
    pub(super) body_timeout: Duration,
    pub(super) metrics: Arc<Metrics>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnService {
    type Response = hyper::Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let mut in_flight = InFlight::start(self.conn.clone());
        let (timeout, metrics) = (self.body_timeout, self.metrics.clone());
        let req = req.map(|b| StallBody::new(b, timeout, metrics));
        let handled = hyper::service::Service::call(&hyper_util::service::TowerToHyperService::new(self.router.clone()), req);
        Box::pin(async move {
            let resp = match handled.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let conn = in_flight.responded();
            Ok(resp.map(|inner| TrackedBody { inner, conn }))
        })
    }
}

/// A request in the handler, from its head to its response (or until hyper drops it).
pub(super) struct InFlight {
    pub(super) conn: Arc<ConnShared>,
    pub(super) responded: bool,
}

impl InFlight {
    fn start(conn: Arc<ConnShared>) -> Self {
        {
            let mut c = conn.lock();
            c.in_flight += 1;
            c.head_started = None;
        }
        InFlight { conn, responded: false }
    }

    fn responded(&mut self) -> Arc<ConnShared> {
        self.responded = true;
        let mut c = self.conn.lock();
        c.in_flight -= 1;
        c.response_open = true;
        c.response_body_done = false;
        c.last_activity = tokio::time::Instant::now();
        drop(c);
        self.conn.clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.responded {
            let mut c = self.conn.lock();
            c.in_flight -= 1;
            c.last_activity = tokio::time::Instant::now();
        }
    }
}

/// A response body that tells the connection when hyper is done with it.
pub(super) struct TrackedBody {
    pub(super) inner: axum::body::Body,
    pub(super) conn: Arc<ConnShared>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.conn.lock().response_body_done = true;
    }
}

/// A request body that fails with [`BodyStalled`] when no byte arrives for its timeout.
pub(super) struct StallBody {
    pub(super) inner: hyper::body::Incoming,
    pub(super) timeout: Duration,
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
    pub(super) armed: bool,
    pub(super) metrics: Arc<Metrics>,
}

impl StallBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        StallBody { inner, timeout, timer: Box::pin(tokio::time::sleep(timeout)), armed: false, metrics }
    }
}

impl http_body::Body for StallBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    this.timer.as_mut().reset(tokio::time::Instant::now() + this.timeout);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.metrics.observe_timeout("body");
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(this.timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body stopped arriving.
#[derive(Debug)]
pub(super) struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "no byte of the request body for {} s", self.0.as_secs_f64())
    }
}

impl std::error::Error for BodyStalled {}

/// The [`BodyStalled`] somewhere in an error's chain of sources.
pub(super) fn stalled<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(s) = x.downcast_ref::<BodyStalled>() {
            return Some(s);
        }
        cur = x.source();
    }
    None
}
