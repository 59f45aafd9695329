//! Server settings, with the defaults PROTOCOL.md names.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the server does with the bytes it receives. More modes may come: match with
/// a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// The chat protocol: newline-delimited JSON requests, responses and events.
    Chat,
    /// Every byte is written back unchanged.
    Echo,
}

/// Where chat state is kept. More backends may come (PostgreSQL): match with a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Storage {
    /// Nothing touches the disk; everything is lost when the server stops.
    InMemory,
    /// A data directory (created if missing).
    Dir(PathBuf),
}

/// How hard a commit waits for the disk. More modes may come: match with a wildcard
/// arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncMode {
    /// `synchronous=NORMAL`: a commit survives the process crashing, not the machine
    /// losing power (the last commits may be lost then, never corrupted).
    Normal,
    /// `synchronous=FULL`: a commit also survives power loss; each commit waits for
    /// an fsync.
    Full,
}

/// Whether anyone may make an account with `signup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signup {
    /// `signup` makes accounts.
    Open,
    /// `signup` answers `forbidden`; accounts come from elsewhere (an operator).
    Closed,
}

/// Where a server's certificate and key are, and where it serves TLS. Build it with
/// [`TlsConfig::new`] and set `listen` if wanted; more fields may come.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain, PEM (leaf first, as `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `None`: every connection on the main address is TLS. `Some(addr)`: the main
    /// address stays plain and `addr` serves TLS beside it.
    pub listen: Option<std::net::SocketAddr>,
}

/// Everything a [`crate::Server`] can be told. `Config::default()` is what
/// `parlor serve` runs with when given no flags.
///
/// More settings are added as the server grows, so a `Config` is not built with a
/// struct literal: start from `Config::default()` and set the fields you want, or use
/// [`crate::ServerBuilder::configure`].
///
/// ```
/// let mut config = parlor::Config::default();
/// config.addr = "127.0.0.1:0".parse().unwrap();
/// config.max_conns = 100;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Chat or echo.
    pub mode: Mode,
    /// Number of worker threads that read, parse and handle frames.
    pub workers: usize,
    /// Longest frame accepted, newline included, in bytes. Left at its default, it
    /// follows `max_text` and `max_outbound` ([`Config::fit_default_limits`]).
    pub max_frame: usize,
    /// Bytes that may wait in one connection's outbound queue before it is cut off
    /// as a slow consumer. Left at its default, it follows `max_frame`.
    pub max_outbound: usize,
    /// Longest message text, in bytes; below `max_frame`. Left at its default, it
    /// follows `max_frame`.
    pub max_text: usize,
    /// Messages per room kept in memory for `history`.
    pub history_len: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A session token unused by any connection for this long expires.
    pub session_ttl: Duration,
    /// Most connections open at once; more are refused.
    pub max_conns: usize,
    /// Most connections open at once from one client address (0: no limit).
    /// Loopback is not limited: it is this machine, or a proxy in front of it.
    pub max_conns_per_ip: usize,
    /// Count loopback connections against `max_conns_per_ip` too (off by default;
    /// tests turn it on).
    pub limit_loopback: bool,
    /// Lines per second one connection may send, on average (0: no limit); bursts
    /// of twice that pass. Every line counts, blank and over-long ones too. A
    /// connection over the rate is throttled: not read until its budget refills, so
    /// TCP slows the sender and nothing is lost; its idle timeout is paused meanwhile.
    pub max_frame_rate: u32,
    /// Most rooms (`create` answers `too_many_rooms` beyond).
    pub max_rooms: usize,
    /// Most rooms one user may create (`create` answers `too_many_rooms` beyond;
    /// 0: no limit). Counted across restarts: the store keeps each room's creator.
    pub max_rooms_per_user: usize,
    /// Most members of one room (`join` answers `room_full` beyond).
    pub max_room_members: usize,
    /// bcrypt cost factor for new password hashes.
    pub bcrypt_cost: u32,
    /// Threads that hash passwords, apart from the workers.
    pub hash_threads: usize,
    /// Longest a password-hashing request may expect to wait for a hashing thread
    /// (estimated from the measured time of a hash and the requests before it); one
    /// that would wait longer is answered `server_busy` with `retry_after`.
    pub max_hash_wait: Duration,
    /// Where chat state is kept.
    pub storage: Storage,
    /// How hard a commit to the data directory waits for the disk.
    pub sync: SyncMode,
    /// TLS: certificate, key, and where to serve it. `None`: plain TCP only.
    pub tls: Option<TlsConfig>,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Server operators: account names that may act as owner in any room (e.g.
    /// `delete_room`) and, later, use the `admin_` ops. Empty: nobody.
    pub operators: Vec<String>,
    /// Whether `signup` makes accounts (`--signup`).
    pub signup: Signup,
    /// The most detailed log records kept, set with `log::set_max_level` at start-up
    /// and on a reload; `None` leaves the process's logger alone (an embedder's).
    pub log_level: Option<log::LevelFilter>,
}

impl TlsConfig {
    /// The certificate chain `cert` and private key `key` (PEM files), serving TLS on
    /// the main address (`listen` is `None`).
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            listen: None,
        }
    }
}

impl fmt::Display for Mode {
    /// `chat` or `echo`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Chat => "chat",
            Mode::Echo => "echo",
        })
    }
}

impl fmt::Display for Signup {
    /// `open` or `closed`, as the flag spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signup::Open => "open",
            Signup::Closed => "closed",
        })
    }
}

impl fmt::Display for Storage {
    /// `in memory`, or the data directory's path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::InMemory => f.write_str("in memory"),
            Storage::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// The default worker pool size: 4 workers per CPU, at most 64.
///
/// Measured on 2 cores (docs/benchmarks.md, "Worker pool sizes"): with many senders, 8
/// workers deliver 1.7-2.2x what 1 does and 1.1-1.6x what 2 do, at about half the CPU
/// per delivery, because while one worker writes to a connection the others queue more
/// frames behind it, so each write carries more of them (deliveries per `writev` 4.0
/// with 2 workers, 6.6 with 8). Echo gains a little, and one sender's fan-out is the
/// same at every size. The cap is a guess: nothing larger than 2 cores was measured.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(8, |n| (4 * n.get()).min(64))
}

/// How many times `max_text` fits in `max_frame`, and `max_frame` in `max_outbound`,
/// when one of them follows another: the ratio of the defaults for the first, room
/// for a few whole frames for the second.
const TEXT_PER_FRAME: usize = 4;
const FRAMES_PER_OUTBOUND: usize = 4;

impl Config {
    /// The rules a configuration must keep, at start-up and on a reload: the
    /// sentence for the first one broken.
    pub(crate) fn check(&self) -> Result<(), String> {
        let config = self;
        let fail = |why: &str| Err(why.to_owned());
        if config.workers == 0 || config.workers > 1024 {
            return fail("--workers must be between 1 and 1024");
        }
        if config.max_frame < 64 {
            return fail("--max-frame must be at least 64 bytes");
        }
        if config.max_outbound < config.max_frame {
            return fail("--max-outbound must be at least --max-frame");
        }
        if config.max_conns == 0 {
            return fail("--max-conns must be at least 1");
        }
        if config.idle_timeout.is_zero() {
            return fail("--idle-timeout must be at least 1 second");
        }
        if !(4..=31).contains(&config.bcrypt_cost) {
            return fail("--bcrypt-cost must be between 4 and 31");
        }
        if config.history_len == 0 {
            return fail("--history-len must be at least 1");
        }
        if config.max_text == 0 || config.max_text >= config.max_frame {
            return fail("--max-text must be at least 1 and below --max-frame");
        }
        if config.hash_threads == 0 {
            return fail("--hash-threads must be at least 1");
        }
        Ok(())
    }

    /// Makes the size limits left at their defaults (equal to [`Config::default`]'s)
    /// fit those that were set: `max_frame` rises above `max_text` or falls to
    /// `max_outbound`, `max_text` falls below `max_frame`, `max_outbound` rises to
    /// `max_frame`. Limits that were set are never changed, so two set limits that
    /// conflict still fail [`crate::Server::bind`]. Returns a sentence per change,
    /// for the log. [`crate::Server::bind`] calls it.
    pub fn fit_default_limits(&mut self) -> Vec<String> {
        let defaults = Config::default();
        let mut notes = Vec::new();
        let mut follow = |limit: &mut usize, value: usize, why: &str| {
            *limit = value;
            notes.push(format!("{why}: {value} bytes"));
        };
        let text_set = self.max_text != defaults.max_text;
        if self.max_frame == defaults.max_frame {
            if text_set && self.max_text >= self.max_frame {
                let fit = self.max_text.saturating_mul(TEXT_PER_FRAME);
                follow(&mut self.max_frame, fit, "--max-frame follows --max-text");
            }
            if self.max_outbound < self.max_frame
                && (!text_set || self.max_outbound > self.max_text)
            {
                let fit = self.max_outbound;
                follow(
                    &mut self.max_frame,
                    fit,
                    "--max-frame follows --max-outbound",
                );
            }
        }
        if self.max_text == defaults.max_text && self.max_text >= self.max_frame {
            let fit = (self.max_frame / TEXT_PER_FRAME).max(1);
            follow(&mut self.max_text, fit, "--max-text follows --max-frame");
        }
        if self.max_outbound == defaults.max_outbound && self.max_outbound < self.max_frame {
            let fit = self.max_frame.saturating_mul(FRAMES_PER_OUTBOUND);
            follow(
                &mut self.max_outbound,
                fit,
                "--max-outbound follows --max-frame",
            );
        }
        notes
    }
}

/// The default listening address, `127.0.0.1:7878`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
            mode: Mode::Chat,
            workers: default_workers(),
            max_frame: 65536,
            max_outbound: 4 << 20,
            max_text: 16384,
            history_len: 1000,
            idle_timeout: Duration::from_secs(300),
            session_ttl: Duration::from_secs(24 * 3600),
            max_conns: 10_000,
            max_conns_per_ip: 64,
            limit_loopback: false,
            max_frame_rate: 1000,
            max_rooms: 100_000,
            max_rooms_per_user: 1000,
            operators: Vec::new(),
            max_room_members: 10_000,
            bcrypt_cost: 12,
            hash_threads: 1,
            max_hash_wait: Duration::from_secs(2),
            storage: Storage::Dir(PathBuf::from("parlor-data")),
            sync: SyncMode::Normal,
            tls: None,
            metrics_addr: None,
            signup: Signup::Open,
            log_level: None,
        }
    }
}
