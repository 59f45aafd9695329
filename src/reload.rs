//! Reloading a running server's configuration: what can change live changes, the rest
//! stays as it started and is named in the report. `parlor serve` calls it on SIGHUP;
//! an operator op can call the same [`Reloader::reload`].

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Config;
use crate::live::Live;

/// Where a reload reads its configuration from (a config file, merged with flags).
pub type ReloadSource = dyn Fn() -> Result<Config, String> + Send + Sync;

/// Applies a new configuration to a running server. Cloneable; every clone acts on
/// the same server. From [`crate::ServerHandle::reloader`].
#[derive(Clone)]
pub struct Reloader {
    live: Arc<Live>,
    /// The configuration in force: what a reload compares against.
    current: Arc<Mutex<Config>>,
    /// `max_conns` at start-up: the job queue is sized for it, so more needs a restart.
    conn_capacity: usize,
    source: Arc<Mutex<Option<Arc<ReloadSource>>>>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The configuration cannot be read, or breaks a rule (as at start-up).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The new TLS certificate or key cannot be used.
    #[error("{0}")]
    Tls(String),
}

/// What a reload did, a sentence per setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings that changed, e.g. `max-text: 16384 -> 100`.
    pub applied: Vec<String>,
    /// Settings that differ from the running ones but need a restart, left as they were.
    pub kept: Vec<String>,
}

impl fmt::Display for ReloadReport {
    /// `applied: ...; needs a restart, kept: ...`, or `nothing changed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() && self.kept.is_empty() {
            return f.write_str("nothing changed");
        }
        if !self.applied.is_empty() {
            write!(f, "applied: {}", self.applied.join(", "))?;
        }
        if !self.kept.is_empty() {
            let sep = if self.applied.is_empty() { "" } else { "; " };
            write!(f, "{sep}needs a restart, kept: {}", self.kept.join(", "))?;
        }
        Ok(())
    }
}

/// Notes each named field that differs between the running configuration `$old` and
/// the new `$new` in `$notes` (`flag-name: running -> new`); with `$keep` true, also
/// puts the running value back into `$new`.
macro_rules! compare {
    ($old:expr, $new:expr, $notes:expr, $keep:expr, $($field:ident),+) => {$(
        if format!("{:?}", $old.$field) != format!("{:?}", $new.$field) {
            $notes.push(format!(
                "{}: {:?} -> {:?}",
                stringify!($field).replace('_', "-"),
                $old.$field,
                $new.$field
            ));
            if $keep {
                $new.$field = $old.$field.clone();
            }
        }
    )+};
}

impl Reloader {
    pub(crate) fn new(live: Arc<Live>, config: Config) -> Reloader {
        Reloader {
            live,
            conn_capacity: config.max_conns,
            current: Arc::new(Mutex::new(config)),
            source: Arc::default(),
        }
    }

    /// Sets where [`Reloader::reload`] reads the configuration from.
    pub fn set_source(&self, source: impl Fn() -> Result<Config, String> + Send + Sync + 'static) {
        *self.source.lock() = Some(Arc::new(source));
    }

    /// Reads the configuration from the source ([`Reloader::set_source`]) and applies
    /// it ([`Reloader::apply`]). Errors: no source, the source's own error (a bad
    /// file), or what `apply` refuses; in every case nothing changed.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let source = self.source.lock().clone();
        let source = source.ok_or_else(|| {
            ReloadError::Config(
                "reload is not available: the server was started without --config".into(),
            )
        })?;
        let config = source().map_err(ReloadError::Config)?;
        self.apply(config)
    }

    /// Applies what can change live from `config`: limits, operators, signup, log
    /// level, and the TLS certificate and key (read again even when their paths are
    /// the same, which is how a renewed certificate is picked up). Addresses, storage,
    /// workers and the other start-up settings keep their running values and are
    /// named in [`ReloadReport::kept`]. Errors (an invalid configuration, an unusable
    /// certificate) change nothing.
    pub fn apply(&self, mut config: Config) -> Result<ReloadReport, ReloadError> {
        let mut current = self.current.lock();
        config.fit_default_limits();
        let mut report = ReloadReport::default();
        compare!(
            current,
            config,
            report.kept,
            true,
            addr,
            mode,
            workers,
            max_outbound,
            history_len,
            session_ttl,
            limit_loopback,
            bcrypt_cost,
            hash_threads,
            max_hash_wait,
            storage,
            sync,
            metrics_addr
        );
        if config.max_conns > self.conn_capacity {
            report.kept.push(format!(
                "max-conns: above {} (the start-up value) -> {}",
                self.conn_capacity, config.max_conns
            ));
            config.max_conns = self.conn_capacity;
        }
        let tls = self.tls(&current, &mut config, &mut report)?;
        config.check().map_err(ReloadError::Config)?;
        compare!(
            current,
            config,
            report.applied,
            false,
            max_frame,
            max_text,
            max_frame_rate,
            idle_timeout,
            max_conns,
            max_conns_per_ip,
            max_rooms,
            max_rooms_per_user,
            max_room_members,
            operators,
            signup,
            log_level,
            tls
        );
        self.live.set(&config, tls);
        if let Some(level) = config.log_level {
            log::set_max_level(level);
        }
        *current = config;
        Ok(report)
    }

    /// The certificate for new handshakes, read from `config`'s files; TLS cannot be
    /// turned on or off, nor moved to another address, without a restart.
    fn tls(
        &self,
        current: &Config,
        config: &mut Config,
        report: &mut ReloadReport,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, ReloadError> {
        match (&current.tls, &mut config.tls) {
            (Some(running), Some(next)) => {
                if running.listen != next.listen {
                    report.kept.push(format!(
                        "tls-listen: {:?} -> {:?}",
                        running.listen, next.listen
                    ));
                    next.listen = running.listen;
                }
                let tls = crate::transport::tls::server_config(next).map_err(ReloadError::Tls)?;
                report
                    .applied
                    .push("tls-cert, tls-key: read again for new handshakes".into());
                Ok(Some(tls))
            }
            (None, None) => Ok(None),
            (running, next) => {
                report.kept.push(format!(
                    "tls: {} -> {}",
                    if running.is_some() { "on" } else { "off" },
                    if next.is_some() { "on" } else { "off" }
                ));
                next.clone_from(running);
                Ok(None)
            }
        }
    }
}
