//! From `parlor serve`'s flags and file to a [`Config`]: defaults filled in, values
//! parsed, combinations checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::serve::ServeArgs;
use crate::config::DEFAULT_ADDR;
use crate::{Config, Mode, Signup, Storage, SyncMode, TlsConfig};

/// The values `--log-level` takes.
pub const LOG_LEVELS: &str = "error, warn, info, debug or trace";

/// The [`Config`] these settings describe. `rust_log`: whether `RUST_LOG` is set, in
/// which case it, not `--log-level`, decides (`log_level` is left `None`). Errors:
/// a sentence naming the flag (or key) and what it expects.
// Field by field, as an embedder must: `Config` is `#[non_exhaustive]`.
#[allow(clippy::field_reassign_with_default)]
pub fn to_config(args: &ServeArgs, rust_log: bool) -> Result<Config, String> {
    explicit_limits_agree(args)?;
    let defaults = Config::default();
    let mut config = Config::default();
    config.addr = socket_addr("addr", args.addr.as_deref().unwrap_or(DEFAULT_ADDR))?;
    config.storage = match (args.in_memory, &args.data_dir) {
        (true, Some(_)) => {
            return Err("--in-memory and --data-dir exclude each other: pick one".into());
        }
        (true, None) => Storage::InMemory,
        (false, dir) => Storage::Dir(dir.clone().unwrap_or_else(|| PathBuf::from("parlor-data"))),
    };
    config.tls = tls(args)?;
    config.metrics_addr = match &args.metrics_addr {
        Some(addr) => Some(socket_addr("metrics-addr", addr)?),
        None => None,
    };
    let wait = args.max_hash_wait.unwrap_or(2.0);
    config.max_hash_wait = Duration::try_from_secs_f64(wait)
        .map_err(|_| format!("--max-hash-wait {wait}: expected seconds, e.g. 2 or 0.5"))?;
    config.sync = match args.sync.as_deref().unwrap_or("normal") {
        "normal" => SyncMode::Normal,
        "full" => SyncMode::Full,
        other => return Err(format!("--sync {other}: expected `normal` or `full`")),
    };
    config.signup = match args.signup.as_deref().unwrap_or("open") {
        "open" => Signup::Open,
        "closed" => Signup::Closed,
        other => return Err(format!("--signup {other}: expected `open` or `closed`")),
    };
    config.log_level = log_level(args.log_level.as_deref().unwrap_or("info"))?;
    if rust_log {
        config.log_level = None;
    }
    config.mode = if args.echo { Mode::Echo } else { Mode::Chat };
    config.workers = args.workers.unwrap_or(defaults.workers);
    config.max_frame = args.max_frame.unwrap_or(defaults.max_frame);
    config.max_outbound = args.max_outbound.unwrap_or(defaults.max_outbound);
    config.max_text = args.max_text.unwrap_or(defaults.max_text);
    config.history_len = args.history_len.unwrap_or(defaults.history_len);
    config.idle_timeout = args
        .idle_timeout
        .map_or(defaults.idle_timeout, Duration::from_secs);
    config.session_ttl = args
        .session_ttl
        .map_or(defaults.session_ttl, Duration::from_secs);
    config.max_conns = args.max_conns.unwrap_or(defaults.max_conns);
    config.max_conns_per_ip = args.max_conns_per_ip.unwrap_or(defaults.max_conns_per_ip);
    config.max_frame_rate = args.max_frame_rate.unwrap_or(defaults.max_frame_rate);
    config.max_rooms = args.max_rooms.unwrap_or(defaults.max_rooms);
    config.max_rooms_per_user = args
        .max_rooms_per_user
        .unwrap_or(defaults.max_rooms_per_user);
    config.max_room_members = args.max_room_members.unwrap_or(defaults.max_room_members);
    config.operators = args.operator.clone();
    config.bcrypt_cost = args.bcrypt_cost.unwrap_or(defaults.bcrypt_cost);
    config.hash_threads = args.hash_threads.unwrap_or(defaults.hash_threads);
    Ok(config)
}

/// `--log-level`'s value as a filter.
pub fn log_level(value: &str) -> Result<Option<log::LevelFilter>, String> {
    let level = match value {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        other => return Err(format!("--log-level {other}: expected {LOG_LEVELS}")),
    };
    Ok(Some(level))
}

fn socket_addr(flag: &str, value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("--{flag} {value}: expected HOST:PORT with a numeric IP, e.g. 127.0.0.1:7878")
    })
}

fn tls(args: &ServeArgs) -> Result<Option<TlsConfig>, String> {
    match (&args.tls_cert, &args.tls_key, &args.tls_listen) {
        (Some(cert), Some(key), listen) => {
            let mut tls = TlsConfig::new(cert, key);
            tls.listen = match listen {
                Some(addr) => Some(socket_addr("tls-listen", addr)?),
                None => None,
            };
            Ok(Some(tls))
        }
        (None, None, None) => Ok(None),
        _ => {
            Err("TLS needs both --tls-cert and --tls-key (and --tls-listen only with them)".into())
        }
    }
}

/// Two size limits given that cannot both hold are an error; one left out follows
/// the other (`Config::fit_default_limits`, logged at start-up).
fn explicit_limits_agree(args: &ServeArgs) -> Result<(), String> {
    if let (Some(text), Some(frame)) = (args.max_text, args.max_frame)
        && text >= frame
    {
        return Err(format!(
            "--max-text {text} must be below --max-frame {frame}"
        ));
    }
    if let (Some(outbound), Some(frame)) = (args.max_outbound, args.max_frame)
        && outbound < frame
    {
        return Err(format!(
            "--max-outbound {outbound} must be at least --max-frame {frame}"
        ));
    }
    Ok(())
}
