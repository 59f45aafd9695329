//! The `GET /metrics` endpoint, with `GET /healthz` (the process answers: 200) and
//! `GET /readyz` (listening and the store writable: 200, else 503 with the reason)
//! for load balancers and service managers: a listener of its own on threads of its own, so that
//! no scrape, nor a client that only pretends to be one, can disturb chat traffic
//! (the poller never sees these sockets).
//!
//! Requests are parsed by `httparse`. Not `tiny_http`: it starts a thread for each
//! connection without limit, sets no timeouts, and its accept loop ends at the first
//! accept error (out of file descriptors, say), which would end the endpoint for good.
//! Here, instead:
//! - At most `HANDLERS` scrapes are served at once and `QUEUED` more wait; one more
//!   is answered `503` at once and closed.
//! - A scrape has `DEADLINE` in all to send its request and take the response.
//! - Out of file descriptors, accepting pauses for `ACCEPT_BACKOFF` rather than spin.
//! - It stops with the server ([`MetricsEndpoint::stop`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use polling::{Event, Events, Poller};

use crate::transport::poller::is_resource_exhaustion;

/// Threads that serve scrapes.
const HANDLERS: usize = 2;
/// Accepted scrapes that may wait for a handler.
const QUEUED: usize = 4;
/// How long one scrape may take, from the start of its handling to its last byte.
const DEADLINE: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Most request headers parsed.
const MAX_HEADERS: usize = 32;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running endpoint.
pub(crate) struct MetricsEndpoint {
    stop: Arc<AtomicBool>,
    poller: Arc<Poller>,
    threads: Vec<JoinHandle<()>>,
}

/// What the endpoint answers with: the metrics text, and whether the server is ready.
struct Handlers<R, Q> {
    render: R,
    ready: Q,
}

/// Serves `render()` at `GET /metrics` and `ready()` at `GET /readyz` on `listener`
/// (non-blocking), until stopped.
pub(crate) fn spawn(
    listener: TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
    ready: impl Fn() -> Result<(), String> + Send + Sync + 'static,
) -> io::Result<MetricsEndpoint> {
    let poller = Arc::new(Poller::new()?);
    // SAFETY: the accept thread deletes the listener from the poller before it drops
    // the listener.
    unsafe { poller.add(&listener, Event::readable(0))? };
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded(QUEUED);
    let render = Arc::new(Handlers { render, ready });
    let mut threads = Vec::new();
    for i in 0..HANDLERS {
        let (rx, render): (Receiver<TcpStream>, _) = (rx.clone(), Arc::clone(&render));
        threads.push(
            thread::Builder::new()
                .name(format!("parlor-metrics-{i}"))
                .spawn(move || {
                    for stream in rx {
                        serve(&stream, &*render);
                    }
                })?,
        );
    }
    let (accept_stop, accept_poller) = (Arc::clone(&stop), Arc::clone(&poller));
    threads.push(
        thread::Builder::new()
            .name("parlor-metrics".into())
            .spawn(move || accept_loop(&listener, &accept_poller, &tx, &accept_stop))?,
    );
    Ok(MetricsEndpoint {
        stop,
        poller,
        threads,
    })
}

impl MetricsEndpoint {
    /// Stops accepting, lets the scrapes under way finish (each within its deadline),
    /// and waits for the threads.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.poller.notify() {
            log::warn!("cannot wake the metrics endpoint to stop it: {e}");
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    poller: &Poller,
    handlers: &Sender<TcpStream>,
    stop: &AtomicBool,
) {
    let mut events = Events::new();
    while !stop.load(Ordering::Acquire) {
        events.clear();
        if let Err(e) = poller.wait(&mut events, None)
            && e.kind() != io::ErrorKind::Interrupted
        {
            log::error!("the metrics endpoint stops: its poller failed: {e}");
            break;
        }
        accept_ready(listener, handlers);
        if let Err(e) = poller.modify(listener, Event::readable(0)) {
            log::error!("the metrics endpoint stops: cannot re-arm its listener: {e}");
            break;
        }
    }
    let _ = poller.delete(listener);
}

/// Accepts what is waiting and hands it to the handlers (or answers `503`).
fn accept_ready(listener: &TcpListener, handlers: &Sender<TcpStream>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_resource_exhaustion(&e) => {
                log::warn!(
                    "metrics endpoint: cannot accept: {e}; pausing for {} ms",
                    ACCEPT_BACKOFF.as_millis()
                );
                thread::sleep(ACCEPT_BACKOFF);
                return;
            }
            Err(e) => {
                log::debug!("metrics endpoint: accept failed: {e}");
                return;
            }
        };
        match handlers.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(stream)) => {
                // A fresh socket's send buffer takes this without blocking.
                let _ = stream.set_nonblocking(true);
                let _ = (&stream).write_all(&response(
                    "503 Service Unavailable",
                    "text/plain",
                    b"busy\n",
                ));
                let _ = stream.shutdown(Shutdown::Write);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Reads one request and answers it, all within `DEADLINE`.
fn serve<R, Q>(stream: &TcpStream, handlers: &Handlers<R, Q>)
where
    R: Fn() -> String,
    Q: Fn() -> Result<(), String>,
{
    let deadline = Instant::now() + DEADLINE;
    let answer = match read_request(stream, deadline) {
        Ok(Some((method, path))) if method != "GET" => {
            log::debug!("metrics endpoint: {method} {path}");
            response(
                "405 Method Not Allowed",
                "text/plain",
                b"try GET /metrics\n",
            )
        }
        Ok(Some((_, path))) if path == "/metrics" || path.starts_with("/metrics?") => {
            let body = (handlers.render)();
            response("200 OK", crate::metrics::CONTENT_TYPE, body.as_bytes())
        }
        Ok(Some((_, path))) if path == "/healthz" => response("200 OK", "text/plain", b"ok\n"),
        Ok(Some((_, path))) if path == "/readyz" => match (handlers.ready)() {
            Ok(()) => response("200 OK", "text/plain", b"ready\n"),
            Err(why) => response(
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n").as_bytes(),
            ),
        },
        Ok(Some(_)) => response("404 Not Found", "text/plain", b"try GET /metrics\n"),
        Ok(None) => response("400 Bad Request", "text/plain", b"try GET /metrics\n"),
        Err(e) => {
            log::debug!("metrics endpoint: {e}");
            return;
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
        return;
    }
    let _ = (&*stream).write_all(&answer);
    let _ = stream.shutdown(Shutdown::Write);
}

/// The method and path of the request; `None` for a malformed or over-long one.
fn read_request(stream: &TcpStream, deadline: Instant) -> io::Result<Option<(String, String)>> {
    stream.set_nonblocking(false)?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = (&*stream).read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no request"));
        }
        request.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&request) {
            Ok(httparse::Status::Complete(_)) => {
                let method = parsed.method.unwrap_or_default().to_owned();
                return Ok(Some((method, parsed.path.unwrap_or_default().to_owned())));
            }
            Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST => {}
            Ok(httparse::Status::Partial) | Err(_) => return Ok(None),
        }
    }
}

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
