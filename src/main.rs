//! The `parlor` command: `parlor serve` runs the server, `parlor chat` is the
//! interactive terminal client, `parlor gen-cert` makes a self-signed certificate,
//! `parlor admin set-password` sets a password on a stopped server's data.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use parlor::client::TlsOptions;
use parlor::config::DEFAULT_ADDR;
use parlor::{Config, Mode, Server, Storage, SyncMode, TlsConfig, certs, terminal};

/// parlor: a multi-client chat server speaking newline-delimited JSON.
#[derive(FromArgs)]
struct Cli {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up: boxing `Serve` would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(Serve),
    Chat(Chat),
    GenCert(GenCert),
    Admin(Admin),
}

/// Run the server (chat mode unless --echo). Logs go to stderr; set RUST_LOG=debug
/// for more, RUST_LOG=warn for less.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
struct Serve {
    /// address to listen on, HOST:PORT (default 127.0.0.1:7878; port 0 picks a free one)
    #[argh(option, default = "DEFAULT_ADDR.to_owned()")]
    addr: String,
    /// directory for the server's data, created if missing (default ./parlor-data)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// how a commit waits for the disk: `normal` survives a crash of the process,
    /// `full` also a power loss, at the price of an fsync per commit (default normal)
    #[argh(option, default = "SyncMode::Normal", from_str_fn(parse_sync))]
    sync: SyncMode,
    /// TLS certificate chain, PEM (with --tls-key: every connection on --addr is TLS,
    /// or only those on --tls-listen if given); `parlor gen-cert` makes one for trying
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --tls-cert)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// serve TLS on this HOST:PORT and keep --addr plain (needs --tls-cert, --tls-key)
    #[argh(option)]
    tls_listen: Option<String>,
    /// serve Prometheus metrics at http://HOST:PORT/metrics (default: off)
    #[argh(option)]
    metrics_addr: Option<String>,
    /// keep everything in memory and write no files (not with --data-dir)
    #[argh(switch)]
    in_memory: bool,
    /// echo mode: write every byte back unchanged instead of speaking the chat protocol
    #[argh(switch)]
    echo: bool,
    /// worker threads that read, parse and handle frames (default: 4 per CPU, at most
    /// 64; see docs/benchmarks.md)
    #[argh(option)]
    workers: Option<usize>,
    /// bcrypt cost for new password hashes, 4-31 (default 12; lower only for tests)
    #[argh(option, default = "12")]
    bcrypt_cost: u32,
    /// threads that hash passwords, apart from the workers (default 1)
    #[argh(option, default = "1")]
    hash_threads: usize,
    /// seconds a signup or login may expect to wait for a hashing thread; longer
    /// waits are answered `server_busy` with `retry_after` (default 2)
    #[argh(option, default = "2.0")]
    max_hash_wait: f64,
    /// longest frame in bytes, newline included (default 65536, or what fits
    /// --max-text and --max-outbound when they are set)
    #[argh(option)]
    max_frame: Option<usize>,
    /// bytes queued for one client before it is cut off as a slow consumer, or (echo
    /// mode) before reading from it pauses (default 4194304, or 4 x --max-frame when
    /// that is larger)
    #[argh(option)]
    max_outbound: Option<usize>,
    /// longest message text in bytes (default 16384, or --max-frame / 4 when that is
    /// smaller)
    #[argh(option)]
    max_text: Option<usize>,
    /// messages per room kept in memory for `history` (default 1000)
    #[argh(option, default = "1000")]
    history_len: usize,
    /// seconds without a byte from a client before it is closed (default 300)
    #[argh(option, default = "300")]
    idle_timeout: u64,
    /// seconds a session token stays valid while no connection uses it (default 86400)
    #[argh(option, default = "86400")]
    session_ttl: u64,
    /// most connections open at once; more are refused (default 10000)
    #[argh(option, default = "10000")]
    max_conns: usize,
    /// most connections from one client address; loopback is not limited (default 64;
    /// 0: no limit)
    #[argh(option, default = "64")]
    max_conns_per_ip: usize,
    /// lines per second one connection may send on average, bursts of twice that
    /// pass; past that the server stops reading it until its budget refills, so the
    /// client is slowed, never refused (default 1000; 0: no limit)
    #[argh(option, default = "1000")]
    max_frame_rate: u32,
    /// most rooms on the server (default 100000)
    #[argh(option, default = "100000")]
    max_rooms: usize,
    /// most rooms one user may create (default 1000; 0: no limit)
    #[argh(option, default = "1000")]
    max_rooms_per_user: usize,
    /// most members in one room (default 10000)
    #[argh(option, default = "10000")]
    max_room_members: usize,
    /// an account that is a server operator: it may act as owner in any room
    /// (repeatable; default none)
    #[argh(option)]
    operator: Vec<String>,
}

/// Chat in this terminal: log in as --user, then type lines to the current room and
/// /commands (/help lists them). Without a terminal on stdin, its first line is the
/// password.
#[derive(FromArgs)]
#[argh(subcommand, name = "chat")]
struct Chat {
    /// server address, HOST:PORT (default 127.0.0.1:7878)
    #[argh(option, default = "DEFAULT_ADDR.to_owned()")]
    addr: String,
    /// user name to log in as (required)
    #[argh(option)]
    user: String,
    /// if the login fails, create the account with this password without asking; when
    /// stdin is not a terminal this is the only way to sign up (default: off, which on
    /// a terminal asks first)
    #[argh(switch)]
    signup: bool,
    /// speak TLS, trusting the public certificate authorities unless --ca says otherwise
    #[argh(switch)]
    tls: bool,
    /// trust the certificates in this PEM file instead of the public authorities, e.g.
    /// the cert.pem of `parlor gen-cert` (implies --tls)
    #[argh(option)]
    ca: Option<PathBuf>,
    /// the name the server's certificate must be valid for (implies --tls; default: the
    /// host part of --addr)
    #[argh(option)]
    server_name: Option<String>,
}

/// Make a self-signed TLS certificate and its key for `parlor serve --tls-cert/--tls-key`:
/// writes DIR/cert.pem and DIR/key.pem (clients trust cert.pem itself, e.g.
/// `parlor chat --ca DIR/cert.pem`).
#[derive(FromArgs)]
#[argh(subcommand, name = "gen-cert")]
struct GenCert {
    /// directory to write cert.pem and key.pem in, created if missing (required)
    #[argh(option)]
    out: PathBuf,
    /// a DNS name or IP address the certificate is for; repeat for several (default:
    /// localhost and 127.0.0.1)
    #[argh(option)]
    name: Vec<String>,
    /// overwrite cert.pem and key.pem if they exist
    #[argh(switch)]
    force: bool,
}

/// Operator commands on a stopped server's data directory.
#[derive(FromArgs)]
#[argh(subcommand, name = "admin")]
struct Admin {
    #[argh(subcommand)]
    command: AdminCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum AdminCommand {
    SetPassword(SetPassword),
}

/// Set a user's password and revoke its sessions, for an operator locked out of the
/// server. The server must be stopped (its data directory is locked while it runs).
/// The password is asked for on the terminal, or read as the first line of stdin.
#[derive(FromArgs)]
#[argh(subcommand, name = "set-password")]
struct SetPassword {
    /// the server's data directory (required)
    #[argh(option)]
    data_dir: PathBuf,
    /// bcrypt cost of the new hash, 4-31 (default 12, as `parlor serve`)
    #[argh(option, default = "12")]
    bcrypt_cost: u32,
    /// the account
    #[argh(positional)]
    user: String,
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("parlor {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let serve = match cli.command {
        Some(Command::Serve(serve)) => serve,
        Some(Command::Chat(chat)) => return chat_main(chat),
        Some(Command::GenCert(gen_cert)) => return gen_cert_main(gen_cert),
        Some(Command::Admin(admin)) => return admin_main(admin),
        None => {
            eprintln!(
                "parlor: say what to do, e.g. `parlor serve` or `parlor chat --user NAME`; \
                 see `parlor --help`"
            );
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn chat_main(chat: Chat) -> ExitCode {
    let tls = (chat.tls || chat.ca.is_some() || chat.server_name.is_some()).then(|| TlsOptions {
        server_name: chat.server_name,
        ca_file: chat.ca,
        ..TlsOptions::default()
    });
    let options = terminal::Options {
        addr: chat.addr,
        user: chat.user,
        signup: chat.signup,
        tls,
    };
    match terminal::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn admin_main(admin: Admin) -> ExitCode {
    let AdminCommand::SetPassword(set) = admin.command;
    if !(4..=31).contains(&set.bcrypt_cost) {
        eprintln!("error: --bcrypt-cost {}: expected 4-31", set.bcrypt_cost);
        return ExitCode::from(2);
    }
    match parlor::cli::admin::set_password(&set.data_dir, &set.user, set.bcrypt_cost) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen_cert_main(gen_cert: GenCert) -> ExitCode {
    let names = if gen_cert.name.is_empty() {
        certs::DEFAULT_NAMES.map(str::to_owned).to_vec()
    } else {
        gen_cert.name
    };
    let files = match certs::write_self_signed(&gen_cert.out, &names, gen_cert.force) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (cert, key) = (files.cert.display(), files.key.display());
    println!("wrote {cert} and {key} (for {})", names.join(", "));
    println!("serve with it:");
    println!("  parlor serve --tls-cert {cert} --tls-key {key}");
    println!("chat through it (the certificate is its own CA):");
    println!("  parlor chat --ca {cert} --user NAME");
    ExitCode::SUCCESS
}

fn config(serve: Serve) -> Result<Config, String> {
    explicit_limits_agree(&serve)?;
    let addr = serve.addr.parse().map_err(|_| {
        format!(
            "--addr {}: expected HOST:PORT with a numeric IP, e.g. 127.0.0.1:7878",
            serve.addr
        )
    })?;
    let storage = match (serve.in_memory, serve.data_dir) {
        (true, Some(_)) => {
            return Err("--in-memory and --data-dir exclude each other: pick one".into());
        }
        (true, None) => Storage::InMemory,
        (false, dir) => Storage::Dir(dir.unwrap_or_else(|| PathBuf::from("parlor-data"))),
    };
    let tls = match (serve.tls_cert, serve.tls_key, serve.tls_listen) {
        (Some(cert), Some(key), listen) => {
            let listen = match listen {
                Some(addr) => Some(addr.parse().map_err(|_| {
                    format!("--tls-listen {addr}: expected HOST:PORT with a numeric IP, e.g. 127.0.0.1:7879")
                })?),
                None => None,
            };
            let mut tls = TlsConfig::new(cert, key);
            tls.listen = listen;
            Some(tls)
        }
        (None, None, None) => None,
        _ => {
            return Err(
                "TLS needs both --tls-cert and --tls-key (and --tls-listen only with them)".into(),
            );
        }
    };
    let metrics_addr = match serve.metrics_addr {
        Some(addr) => Some(addr.parse().map_err(|_| {
            format!(
                "--metrics-addr {addr}: expected HOST:PORT with a numeric IP, e.g. 127.0.0.1:9100"
            )
        })?),
        None => None,
    };
    let max_hash_wait = Duration::try_from_secs_f64(serve.max_hash_wait).map_err(|_| {
        format!(
            "--max-hash-wait {}: expected seconds, e.g. 2 or 0.5",
            serve.max_hash_wait
        )
    })?;
    // Field by field from the defaults: `Config` is `#[non_exhaustive]`, and a setting
    // without a flag keeps its default.
    let mut config = Config::default();
    config.addr = addr;
    config.mode = if serve.echo { Mode::Echo } else { Mode::Chat };
    config.workers = serve.workers.unwrap_or(config.workers);
    config.max_frame = serve.max_frame.unwrap_or(config.max_frame);
    config.max_outbound = serve.max_outbound.unwrap_or(config.max_outbound);
    config.max_text = serve.max_text.unwrap_or(config.max_text);
    config.history_len = serve.history_len;
    config.idle_timeout = Duration::from_secs(serve.idle_timeout);
    config.session_ttl = Duration::from_secs(serve.session_ttl);
    config.max_conns = serve.max_conns;
    config.max_conns_per_ip = serve.max_conns_per_ip;
    config.limit_loopback = false;
    config.max_frame_rate = serve.max_frame_rate;
    config.max_rooms = serve.max_rooms;
    config.max_rooms_per_user = serve.max_rooms_per_user;
    config.max_room_members = serve.max_room_members;
    config.operators = serve.operator;
    config.bcrypt_cost = serve.bcrypt_cost;
    config.hash_threads = serve.hash_threads;
    config.max_hash_wait = max_hash_wait;
    config.storage = storage;
    config.sync = serve.sync;
    config.tls = tls;
    config.metrics_addr = metrics_addr;
    Ok(config)
}

/// Two size limits given on the command line that cannot both hold are an error;
/// one left out follows the other (`Config::fit_default_limits`, logged at start-up).
fn explicit_limits_agree(serve: &Serve) -> Result<(), String> {
    if let (Some(text), Some(frame)) = (serve.max_text, serve.max_frame)
        && text >= frame
    {
        return Err(format!(
            "--max-text {text} must be below --max-frame {frame}"
        ));
    }
    if let (Some(outbound), Some(frame)) = (serve.max_outbound, serve.max_frame)
        && outbound < frame
    {
        return Err(format!(
            "--max-outbound {outbound} must be at least --max-frame {frame}"
        ));
    }
    Ok(())
}

fn parse_sync(value: &str) -> Result<SyncMode, String> {
    match value {
        "normal" => Ok(SyncMode::Normal),
        "full" => Ok(SyncMode::Full),
        other => Err(format!("--sync {other}: expected `normal` or `full`")),
    }
}

fn run(serve: Serve) -> Result<(), String> {
    let config = config(serve)?;
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let server = Server::bind(config.clone()).map_err(|e| e.to_string())?;
    log::info!(
        "parlor {} listening on {} (mode: {}, workers: {}, data: {}, tls: {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.mode,
        config.workers,
        config.storage,
        match server.tls_addr() {
            None => "off".to_owned(),
            Some(addr) if addr == server.local_addr() => "on".to_owned(),
            Some(addr) => format!("on {addr}"),
        }
    );
    let handle = server.spawn();
    let trigger = handle.trigger();
    std::thread::Builder::new()
        .name("parlor-signals".into())
        .spawn(move || {
            let mut signals = signals;
            let mut seen = signals.forever();
            if let Some(signal) = seen.next() {
                log::info!("signal {signal}: shutting down (again to exit at once)");
                trigger.shutdown();
            }
            if seen.next().is_some() {
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    handle.join().map_err(|e| e.to_string())?;
    log::info!("stopped");
    Ok(())
}
