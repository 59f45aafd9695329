//! The embeddable server: bind from a [`Config`], learn the bound address, run it on
//! background threads, and shut it down.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use polling::Poller;
use serde::de::DeserializeOwned;

use crate::chat::Chat;
use crate::chat::command::{CommandError, Context, Extensions, Handler, RoomMessage};
use crate::config::{Config, Mode, Storage};
use crate::echo::Echo;
use crate::live::Live;
use crate::protocol::request::OpKind;
use crate::reload::Reloader;
use crate::store::{Store, StoreError};
use crate::transport::metrics_endpoint;
use crate::transport::poller::{self, Listener, PollerSetup};
use crate::transport::reactor::Reactor;
use crate::transport::service::{Pool, Service};
use crate::transport::worker;

/// Why a server could not start or stopped with an error. New kinds may be added:
/// match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be opened.
    #[error("{}", bind_message(addr, flag, source))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The flag that sets it (`--addr`, `--tls-listen`, `--metrics-addr`), for
        /// the message.
        flag: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// The configuration makes no sense (e.g. zero workers).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The poller failed; the server cannot watch its sockets.
    #[error("the poller failed: {0}")]
    Poller(#[source] io::Error),
    /// The data directory or database cannot be used.
    #[error("{0}")]
    Store(#[source] StoreError),
    /// A command was registered under the name of a built-in op or of another
    /// command.
    #[error("the command name `{0}` is taken (by a built-in op or another command)")]
    CommandClash(String),
    /// The TLS certificate or key cannot be used.
    #[error("{0}")]
    Tls(String),
}

fn bind_message(addr: &SocketAddr, flag: &str, source: &io::Error) -> String {
    if source.kind() == io::ErrorKind::AddrInUse {
        format!(
            "cannot listen on {addr}: the address is in use (is another server running there? \
             choose another with {flag})"
        )
    } else {
        format!("cannot listen on {addr}: {source}")
    }
}

/// A server bound to its address and ready to run.
///
/// ```
/// use parlor::{Config, Server, Storage};
///
/// let mut config = Config::default();
/// config.addr = "127.0.0.1:0".parse().unwrap();
/// config.storage = Storage::InMemory;
/// let server = Server::bind(config)?;
/// println!("listening on {}", server.local_addr());
/// let handle = server.spawn();
/// handle.shutdown();
/// handle.join()?;
/// # Ok::<(), parlor::ServerError>(())
/// ```
pub struct Server {
    config: Config,
    listeners: Vec<Listener>,
    /// The `/metrics` listener, if asked for.
    metrics: Option<TcpListener>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    poller: Arc<Poller>,
    /// The chat service, built (and its state read back) at bind time so that a bad
    /// data directory fails start-up; `None` in echo mode.
    chat: Option<Chat>,
    /// The settings a reload may change, shared with the chat service and transport.
    live: Arc<Live>,
    /// Applies a new configuration: SIGHUP and `admin_reload` come here.
    reloader: Reloader,
}

impl Server {
    /// Checks the configuration, opens the data directory (chat mode), and opens the
    /// listening socket (port 0 picks one).
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        Server::bind_with(config, Extensions::default())
    }

    /// A builder, for the configuration and your own commands and hooks.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config::default(),
            extensions: Extensions::default(),
            error: None,
        }
    }

    fn bind_with(mut config: Config, mut extensions: Extensions) -> Result<Server, ServerError> {
        settle(&mut config)?;
        let store = match (config.mode, &config.storage) {
            (Mode::Chat, Storage::Dir(dir)) => Some(
                Store::open(dir, config.sync, config.history_len).map_err(ServerError::Store)?,
            ),
            _ => None,
        };
        let tls = match &config.tls {
            Some(tls) => Some(crate::transport::tls::server_config(tls).map_err(ServerError::Tls)?),
            None => None,
        };
        let live = Arc::new(Live::new(&config, tls.clone()));
        let reloader = Reloader::new(Arc::clone(&live), config.clone());
        // `admin_reload` does what SIGHUP does (unless the embedder set its own).
        if extensions.hooks.reload.is_none() {
            extensions.hooks.reload = Some(reload_hook(reloader.clone()));
        }
        let chat = match config.mode {
            Mode::Echo => None,
            Mode::Chat => Some(
                Chat::new(&config, store, extensions, Arc::clone(&live))
                    .map_err(ServerError::Store)?,
            ),
        };
        let (main, local_addr) = listen(config.addr, "--addr")?;
        let mut listeners = Vec::new();
        let tls_addr = match (tls, config.tls.as_ref().and_then(|t| t.listen)) {
            (None, _) => {
                listeners.push(Listener {
                    socket: main,
                    tls: None,
                });
                None
            }
            (Some(_), None) => {
                listeners.push(Listener {
                    socket: main,
                    tls: Some(Arc::clone(&live)),
                });
                Some(local_addr)
            }
            (Some(_), Some(addr)) => {
                listeners.push(Listener {
                    socket: main,
                    tls: None,
                });
                let (socket, tls_addr) = listen(addr, "--tls-listen")?;
                listeners.push(Listener {
                    socket,
                    tls: Some(Arc::clone(&live)),
                });
                Some(tls_addr)
            }
        };
        let metrics = match config.metrics_addr {
            Some(addr) => Some(listen(addr, "--metrics-addr")?.0),
            None => None,
        };
        let poller = Arc::new(Poller::new().map_err(ServerError::Poller)?);
        Ok(Server {
            config,
            listeners,
            metrics,
            local_addr,
            tls_addr,
            poller,
            chat,
            live,
            reloader,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address that serves TLS, if any: `local_addr` itself, or the separate
    /// `TlsConfig::listen` one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address serving `GET /metrics`, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the poller and the workers on background threads.
    pub fn spawn(self) -> ServerHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let poller = Arc::clone(&self.poller);
        let (addr, tls_addr) = (self.local_addr, self.tls_addr);
        let reloader = self.reloader.clone();
        let thread_stop = Arc::clone(&stop);
        let mut this = self;
        let thread = thread::Builder::new()
            .name("parlor-poller".into())
            .spawn(move || match this.chat.take() {
                None => serve(this, Echo, thread_stop),
                Some(chat) => serve(this, chat, thread_stop),
            })
            .expect("cannot start the poller thread");
        ServerHandle {
            addr,
            tls_addr,
            stop,
            poller,
            reloader,
            thread: Some(thread),
        }
    }

    /// Runs the server on this thread until it is shut down from elsewhere (see
    /// [`ServerHandle`]); `spawn` then `join` is the usual way.
    pub fn run(self) -> Result<(), ServerError> {
        self.spawn().join()
    }
}

/// Opens a non-blocking listening socket.
fn listen(addr: SocketAddr, flag: &'static str) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_err = |source| ServerError::Bind { addr, flag, source };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    Ok((listener, bound))
}

fn serve<S: Service>(server: Server, service: S, stop: Arc<AtomicBool>) -> Result<(), ServerError> {
    let config = server.config;
    let workers = config.workers;
    // One job per connection at most, one service job per worker, plus the stop
    // tasks: the queue never fills.
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(config.max_conns + 2 * workers + 1);
    let reactor = Arc::new(Reactor::new(server.poller, jobs_tx, config.max_outbound));
    let live = server.live;
    let service = Arc::new(service);
    service.attach(Pool::new(&reactor, workers));
    let metrics = match server.metrics {
        Some(listener) => {
            let (reactor, service) = (Arc::clone(&reactor), Arc::clone(&service));
            let ready_service = Arc::clone(&service);
            let render = crate::metrics::render(move |out| {
                reactor.metrics.encode(out, reactor.open_count())?;
                service.encode_metrics(out)
            });
            // Listening: the poller runs until a shutdown starts.
            let stopping = Arc::clone(&stop);
            let ready = move || {
                if stopping.load(Ordering::Acquire) {
                    return Err("shutting down".to_owned());
                }
                ready_service.ready()
            };
            Some(metrics_endpoint::spawn(listener, render, ready).map_err(ServerError::Poller)?)
        }
        None => None,
    };
    let threads = worker::spawn(workers, &jobs_rx, &reactor, &service);
    let setup = PollerSetup {
        listeners: server.listeners,
        live,
        limit_loopback: config.limit_loopback,
        workers,
        stop,
    };
    let result = poller::run(&reactor, &service, setup).map_err(ServerError::Poller);
    // Its renderer holds the service, which must go before the jobs below.
    if let Some(endpoint) = metrics {
        endpoint.stop();
    }
    if result.is_err() {
        reactor.stop_workers(workers);
    }
    for thread in threads {
        let _ = thread.join();
    }
    // The service goes first (its hashing threads may still queue wake-ups); then jobs
    // queued after the stop tasks, which hold connections, which hold the queue: drop
    // them so those sockets close now rather than never.
    drop(service);
    while jobs_rx.try_recv().is_ok() {}
    // Connections still referenced by the map (a shutdown that timed out) are dropped
    // here, which unregisters their sockets.
    reactor.conns.lock().clear();
    result
}

/// A running server: its address, and the way to stop it. Dropping the handle shuts
/// the server down and waits for it.
pub struct ServerHandle {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    poller: Arc<Poller>,
    reloader: Reloader,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address that serves TLS, if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// A cloneable way to start the shutdown from elsewhere (a signal handler, say).
    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            stop: Arc::clone(&self.stop),
            poller: Arc::clone(&self.poller),
        }
    }

    /// Applies a new configuration live; see [`Reloader::apply`].
    pub fn reload(&self, config: Config) -> Result<crate::ReloadReport, crate::ReloadError> {
        self.reloader.apply(config)
    }

    /// A cloneable way to reload from elsewhere (a signal handler, an operator op).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Starts a graceful shutdown: stop accepting, tell every client (`closing` with
    /// `shutdown` in chat mode), let queues drain for up to 3 s, close. Returns at once.
    pub fn shutdown(&self) {
        self.trigger().shutdown();
    }

    /// Waits until the server has stopped.
    pub fn join(mut self) -> Result<(), ServerError> {
        self.wait()
    }

    fn wait(&mut self) -> Result<(), ServerError> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(ServerError::Poller(io::Error::other(
                    "the poller thread panicked",
                )))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
            let _ = self.wait();
        }
    }
}

/// Starts a server's graceful shutdown; see [`ServerHandle::shutdown`].
#[derive(Clone)]
pub struct ShutdownTrigger {
    stop: Arc<AtomicBool>,
    poller: Arc<Poller>,
}

impl ShutdownTrigger {
    /// Starts the graceful shutdown. Returns at once; calling it again does nothing.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.poller.notify() {
            log::error!("cannot wake the poller to shut down: {e}");
        }
    }
}

/// Builds a [`Server`]: its configuration, plus your own commands and hooks.
///
/// ```
/// use parlor::{CommandError, Server};
/// use serde_json::{Value, json};
///
/// let server = Server::builder()
///     .addr("127.0.0.1:0")
///     .configure(|c| c.storage = parlor::Storage::InMemory)
///     .command("shout", |req: Value, _cx: &mut parlor::Context<'_>| {
///         let text = req["text"].as_str().ok_or_else(|| CommandError::new("bad_request", "`text` is missing"))?;
///         Ok(json!({ "text": text.to_uppercase() }))
///     })
///     .build()?;
/// # Ok::<(), parlor::ServerError>(())
/// ```
pub struct ServerBuilder {
    config: Config,
    extensions: Extensions,
    /// The first mistake seen; `build` reports it.
    error: Option<ServerError>,
}

impl ServerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place: any knob of [`Config`].
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The address to listen on (`"127.0.0.1:7878"`; port 0 picks a free one).
    pub fn addr(mut self, addr: impl ToSocketAddrs) -> Self {
        match addr.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => self.config.addr = addr,
            Ok(None) => self.fail(ServerError::Config(
                "the address resolves to nothing".into(),
            )),
            Err(e) => self.fail(ServerError::Config(format!("bad address: {e}"))),
        }
        self
    }

    /// Keeps everything in memory: no data directory.
    pub fn in_memory(mut self) -> Self {
        self.config.storage = Storage::InMemory;
        self
    }

    /// Worker threads.
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// Adds an op named `name`. Its handler runs on the worker pool with the request
    /// (the whole frame, as `T`; a frame that does not fit `T` is `bad_request`) and
    /// a [`Context`](crate::Context). An object it returns becomes the response's
    /// fields; an error becomes an error response with its code. Anyone may call it,
    /// logged in or not: check [`Context::user`](crate::Context::user) if it matters.
    /// A name taken by a built-in op or another command fails [`build`](Self::build).
    pub fn command<T, F>(mut self, name: &str, handler: F) -> Self
    where
        T: DeserializeOwned,
        F: Fn(T, &mut Context<'_>) -> Result<serde_json::Value, CommandError>
            + Send
            + Sync
            + 'static,
    {
        let builtin = OpKind::ALL.iter().any(|(op, _)| *op == name);
        if builtin
            || self
                .extensions
                .commands
                .iter()
                .any(|(taken, _)| taken == name)
        {
            self.fail(ServerError::CommandClash(name.to_owned()));
            return self;
        }
        let handler: Arc<Handler> = Arc::new(move |text: &str, cx: &mut Context<'_>| {
            let request = serde_json::from_str::<T>(text)
                .map_err(|e| CommandError::new("bad_request", e.to_string()))?;
            handler(request, cx)
        });
        self.extensions.commands.push((name.to_owned(), handler));
        self
    }

    /// Called with the peer's address when a connection opens (on the poller thread:
    /// keep it quick).
    pub fn on_open(mut self, hook: impl Fn(SocketAddr) + Send + Sync + 'static) -> Self {
        self.extensions.hooks.opened = Some(Arc::new(hook));
        self
    }

    /// Called when a connection closes, with the user it was logged in as.
    pub fn on_close(
        mut self,
        hook: impl Fn(SocketAddr, Option<&str>) + Send + Sync + 'static,
    ) -> Self {
        self.extensions.hooks.closed = Some(Arc::new(hook));
        self
    }

    /// Called when a connection logs in (`login` or `resume`) as a user.
    pub fn on_login(mut self, hook: impl Fn(&str, SocketAddr) + Send + Sync + 'static) -> Self {
        self.extensions.hooks.logged_in = Some(Arc::new(hook));
        self
    }

    /// Called before a room message is sent (under the room's lock: keep it quick).
    /// An error stops the message from reaching anyone, and is the sender's answer.
    pub fn on_message(
        mut self,
        hook: impl Fn(&RoomMessage<'_>) -> Result<(), CommandError> + Send + Sync + 'static,
    ) -> Self {
        self.extensions.hooks.message = Some(Arc::new(hook));
        self
    }

    /// Called by a server operator's `admin_reload` (on a worker thread): re-reads
    /// the configuration and applies what can change live, answering in words what
    /// changed (`Ok`) or why nothing did (`Err`, sent as an `internal` error). Without
    /// it, `admin_reload` does what SIGHUP does: re-reads the `--config` file (a server
    /// started without one answers that reloading is not available).
    pub fn on_reload(
        mut self,
        hook: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.extensions.hooks.reload = Some(Arc::new(hook));
        self
    }

    /// Checks everything and binds, as [`Server::bind`] does.
    pub fn build(self) -> Result<Server, ServerError> {
        match self.error {
            Some(error) => Err(error),
            None => Server::bind_with(self.config, self.extensions),
        }
    }

    fn fail(&mut self, error: ServerError) {
        self.error.get_or_insert(error);
    }
}

/// Fits the limits left at their defaults to those given, checks the whole, and
/// applies what the process needs first (log level, open-file limit).
fn settle(config: &mut Config) -> Result<(), ServerError> {
    for note in config.fit_default_limits() {
        log::info!("{note}");
    }
    config.check().map_err(ServerError::Config)?;
    if let Some(level) = config.log_level {
        log::set_max_level(level);
    }
    if let Some(warning) = crate::transport::fdlimit::fit(config.max_conns) {
        log::warn!("{warning}");
    }
    Ok(())
}

/// `admin_reload` as SIGHUP does it: re-read the `--config` file and apply it,
/// answering the report in words.
fn reload_hook(reloader: Reloader) -> Arc<crate::chat::command::ReloadHook> {
    Arc::new(move || {
        reloader
            .reload()
            .map(|report| report.to_string())
            .map_err(|e| e.to_string())
    })
}
