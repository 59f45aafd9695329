//! The `parlor` command: `parlor serve` runs the server, `parlor chat` is the
//! interactive terminal client.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use parlor::config::DEFAULT_ADDR;
use parlor::{Config, Mode, Server, Storage, SyncMode, terminal};

/// parlor: a multi-client chat server speaking newline-delimited JSON.
#[derive(FromArgs)]
struct Cli {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(Serve),
    Chat(Chat),
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
    /// keep everything in memory and write no files (not with --data-dir)
    #[argh(switch)]
    in_memory: bool,
    /// echo mode: write every byte back unchanged instead of speaking the chat protocol
    #[argh(switch)]
    echo: bool,
    /// worker threads that read, parse and handle frames (default: number of CPUs)
    #[argh(option)]
    workers: Option<usize>,
    /// bcrypt cost for new password hashes, 4-31 (default 12; lower only for tests)
    #[argh(option, default = "12")]
    bcrypt_cost: u32,
    /// threads that hash passwords, apart from the workers (default 1)
    #[argh(option, default = "1")]
    hash_threads: usize,
    /// longest frame in bytes, newline included (default 65536)
    #[argh(option, default = "65536")]
    max_frame: usize,
    /// bytes queued for one client before it is cut off as a slow consumer, or (echo
    /// mode) before reading from it pauses (default 4194304)
    #[argh(option, default = "4 << 20")]
    max_outbound: usize,
    /// longest message text in bytes (default 16384)
    #[argh(option, default = "16384")]
    max_text: usize,
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
    let options = terminal::Options {
        addr: chat.addr,
        user: chat.user,
        signup: chat.signup,
    };
    match terminal::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(serve: Serve) -> Result<Config, String> {
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
    let defaults = Config::default();
    Ok(Config {
        addr,
        mode: if serve.echo { Mode::Echo } else { Mode::Chat },
        workers: serve.workers.unwrap_or(defaults.workers),
        max_frame: serve.max_frame,
        max_outbound: serve.max_outbound,
        max_text: serve.max_text,
        history_len: serve.history_len,
        idle_timeout: Duration::from_secs(serve.idle_timeout),
        session_ttl: Duration::from_secs(serve.session_ttl),
        max_conns: serve.max_conns,
        bcrypt_cost: serve.bcrypt_cost,
        hash_threads: serve.hash_threads,
        hash_queue: defaults.hash_queue,
        storage,
        sync: serve.sync,
    })
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
        "parlor {} listening on {} (mode: {}, workers: {}, data: {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        match config.mode {
            Mode::Chat => "chat",
            Mode::Echo => "echo",
        },
        config.workers,
        match &config.storage {
            Storage::InMemory => "in memory".to_owned(),
            Storage::Dir(dir) => dir.display().to_string(),
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
