//! The settings of `parlor serve`: one struct that is both its flags (argh) and its
//! config file (serde, keys spelled as the flags), so the two cannot drift apart.
//! Every value is optional here, to tell "not given" from "given as the default";
//! [`ServeArgs::merge`] lets a flag win over the file, and `settings.rs` fills in
//! the defaults.

use std::path::PathBuf;

use argh::FromArgs;
use serde::Deserialize;

/// Run the server (chat mode unless --echo). Logs go to stderr (--log-level, or
/// RUST_LOG which wins when set). Every flag can also be a key of --config FILE
/// (`parlor config example` prints one); a flag given here wins over the file.
/// SIGHUP re-reads the file and applies what can change live.
#[derive(FromArgs, Deserialize, Default, Debug, Clone, PartialEq)]
#[argh(subcommand, name = "serve")]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// a TOML file with the settings below as keys (e.g. `max-text = 16384`); SIGHUP
    /// reloads it
    #[argh(option)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// address to listen on, HOST:PORT (default 127.0.0.1:7878; port 0 picks a free one)
    #[argh(option)]
    pub addr: Option<String>,
    /// directory for the server's data, created if missing (default ./parlor-data)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// how a commit waits for the disk: `normal` survives a crash of the process,
    /// `full` also a power loss, at the price of an fsync per commit (default normal)
    #[argh(option)]
    pub sync: Option<String>,
    /// TLS certificate chain, PEM (with --tls-key: every connection on --addr is TLS,
    /// or only those on --tls-listen if given); `parlor gen-cert` makes one for
    /// trying; a reload reads it again
    #[argh(option)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --tls-cert; a reload reads it again)
    #[argh(option)]
    pub tls_key: Option<PathBuf>,
    /// serve TLS on this HOST:PORT and keep --addr plain (needs --tls-cert, --tls-key)
    #[argh(option)]
    pub tls_listen: Option<String>,
    /// serve Prometheus metrics at http://HOST:PORT/metrics, and /healthz and /readyz
    /// (default: off)
    #[argh(option)]
    pub metrics_addr: Option<String>,
    /// keep everything in memory and write no files (not with --data-dir)
    #[argh(switch)]
    #[serde(default)]
    pub in_memory: bool,
    /// echo mode: write every byte back unchanged instead of speaking the chat protocol
    #[argh(switch)]
    #[serde(default)]
    pub echo: bool,
    /// worker threads that read, parse and handle frames (default: 4 per CPU, at most
    /// 64; see docs/benchmarks.md)
    #[argh(option)]
    pub workers: Option<usize>,
    /// bcrypt cost for new password hashes, 4-31 (default 12; lower only for tests)
    #[argh(option)]
    pub bcrypt_cost: Option<u32>,
    /// threads that hash passwords, apart from the workers (default 1)
    #[argh(option)]
    pub hash_threads: Option<usize>,
    /// seconds a signup or login may expect to wait for a hashing thread; longer
    /// waits are answered `server_busy` with `retry_after` (default 2)
    #[argh(option)]
    pub max_hash_wait: Option<f64>,
    /// longest frame in bytes, newline included (default 65536, or what fits
    /// --max-text and --max-outbound when they are set; reloads live for new
    /// connections)
    #[argh(option)]
    pub max_frame: Option<usize>,
    /// bytes queued for one client before it is cut off as a slow consumer, or (echo
    /// mode) before reading from it pauses (default 4194304, or 4 x --max-frame when
    /// that is larger)
    #[argh(option)]
    pub max_outbound: Option<usize>,
    /// longest message text in bytes (default 16384, or --max-frame / 4 when that is
    /// smaller; reloads live)
    #[argh(option)]
    pub max_text: Option<usize>,
    /// messages per room kept in memory for `history` (default 1000)
    #[argh(option)]
    pub history_len: Option<usize>,
    /// seconds without a byte from a client before it is closed (default 300; reloads
    /// live)
    #[argh(option)]
    pub idle_timeout: Option<u64>,
    /// seconds a session token stays valid while no connection uses it (default 86400)
    #[argh(option)]
    pub session_ttl: Option<u64>,
    /// most connections open at once; more are refused (default 10000; reloads live
    /// up to the value the server started with)
    #[argh(option)]
    pub max_conns: Option<usize>,
    /// most connections from one client address; loopback is not limited (default 64;
    /// 0: no limit; reloads live)
    #[argh(option)]
    pub max_conns_per_ip: Option<usize>,
    /// lines per second one connection may send on average, bursts of twice that
    /// pass; past that the server stops reading it until its budget refills, so the
    /// client is slowed, never refused (default 1000; 0: no limit; reloads live for
    /// new connections)
    #[argh(option)]
    pub max_frame_rate: Option<u32>,
    /// most rooms on the server (default 100000; reloads live)
    #[argh(option)]
    pub max_rooms: Option<usize>,
    /// most rooms one user may create (default 1000; 0: no limit; reloads live)
    #[argh(option)]
    pub max_rooms_per_user: Option<usize>,
    /// most members in one room (default 10000; reloads live)
    #[argh(option)]
    pub max_room_members: Option<usize>,
    /// an account that is a server operator: it may act as owner in any room
    /// (repeatable; config key `operators`, a list; default none; reloads live)
    #[argh(option)]
    #[serde(rename = "operators", default)]
    pub operator: Vec<String>,
    /// open: anyone may sign up; closed: `signup` answers `forbidden` (default
    /// open; reloads live)
    #[argh(option)]
    pub signup: Option<String>,
    /// error, warn, info, debug or trace (default info; RUST_LOG, when set, wins;
    /// reloads live)
    #[argh(option)]
    pub log_level: Option<String>,
}

/// `a = a.or(b)` for each named field: the first given wins.
macro_rules! first_given {
    ($a:expr, $b:expr, $($field:ident),+) => {$( $a.$field = $a.$field.take().or($b.$field); )+};
}

impl ServeArgs {
    /// These flags over `file`: a flag given on the command line wins, a switch given
    /// in either place is on, and `--operator` replaces the file's `operators`.
    pub fn merge(mut self, mut file: ServeArgs) -> ServeArgs {
        // Where state is kept is one setting, named by either key: a flag for it
        // replaces the file's, so `--in-memory` wins over the file's `data-dir`.
        if self.in_memory {
            file.data_dir = None;
        }
        if self.data_dir.is_some() {
            file.in_memory = false;
        }
        first_given!(
            self,
            file,
            addr,
            data_dir,
            sync,
            tls_cert,
            tls_key,
            tls_listen,
            metrics_addr,
            workers,
            bcrypt_cost,
            hash_threads,
            max_hash_wait,
            max_frame,
            max_outbound,
            max_text,
            history_len,
            idle_timeout,
            session_ttl,
            max_conns,
            max_conns_per_ip,
            max_frame_rate,
            max_rooms,
            max_rooms_per_user,
            max_room_members,
            signup,
            log_level
        );
        self.in_memory |= file.in_memory;
        self.echo |= file.echo;
        if self.operator.is_empty() {
            self.operator = file.operator;
        }
        self
    }
}
