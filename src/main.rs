//! The `parlor` command: `parlor serve` runs the server, `parlor chat` is the
//! interactive terminal client, `parlor gen-cert` makes a self-signed certificate,
//! `parlor admin set-password` sets a password on a stopped server's data.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use parlor::cli::backup::{self, BackupArgs, RestoreArgs};
use parlor::cli::serve::{self, ServeArgs};
use parlor::client::TlsOptions;
use parlor::config::DEFAULT_ADDR;
use parlor::{Reloader, Server, ShutdownTrigger, certs, terminal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

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
    Serve(ServeArgs),
    Chat(Chat),
    GenCert(GenCert),
    Config(ConfigCmd),
    Backup(BackupArgs),
    Restore(RestoreArgs),
    Admin(Admin),
}

/// About `parlor serve --config FILE`.
#[derive(FromArgs)]
#[argh(subcommand, name = "config")]
struct ConfigCmd {
    #[argh(subcommand)]
    command: ConfigCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ConfigCommand {
    Example(ConfigExample),
}

/// Print a config file with every key, its default, and whether it reloads live.
#[derive(FromArgs)]
#[argh(subcommand, name = "example")]
struct ConfigExample {}

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
        Some(Command::Config(ConfigCmd {
            command: ConfigCommand::Example(_),
        })) => {
            print!("{}", serve::example());
            return ExitCode::SUCCESS;
        }
        Some(Command::Backup(args)) => return report(backup::run_backup(&args)),
        Some(Command::Restore(args)) => return report(backup::run_restore(&args)),
        Some(Command::Admin(admin)) => return admin_main(admin),
        None => {
            eprintln!(
                "parlor: say what to do, e.g. `parlor serve` or `parlor chat --user NAME`; \
                 see `parlor --help`"
            );
            return ExitCode::from(2);
        }
    };
    init_logger();
    match run(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr. With `RUST_LOG` set, it decides; without, every record passes the
/// logger and `--log-level` (which a reload may change) sets `log::max_level`.
fn init_logger() {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::Builder::from_env(env_logger::Env::default()).init();
    } else {
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Trace)
            .init();
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Prints a one-shot command's outcome: 0 and the sentence, or 1 and the error.
fn report(outcome: Result<String, String>) -> ExitCode {
    match outcome {
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

/// Runs the server until SIGINT or SIGTERM; SIGHUP reloads the config file.
fn run(flags: ServeArgs) -> Result<(), String> {
    let rust_log = std::env::var_os("RUST_LOG").is_some();
    let config = serve::to_config(&serve::with_file(&flags)?, rust_log)?;
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
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
    let reloader = handle.reloader();
    reloader.set_source(move || serve::to_config(&serve::with_file(&flags)?, rust_log));
    let trigger = handle.trigger();
    std::thread::Builder::new()
        .name("parlor-signals".into())
        .spawn(move || watch_signals(signals, &trigger, &reloader))
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    handle.join().map_err(|e| e.to_string())?;
    log::info!("stopped");
    Ok(())
}

/// SIGHUP reloads; the first SIGINT or SIGTERM shuts down gracefully, a second exits
/// at once (status 130).
fn watch_signals(mut signals: Signals, trigger: &ShutdownTrigger, reloader: &Reloader) {
    let mut stopping = false;
    for signal in signals.forever() {
        if signal == SIGHUP {
            match reloader.reload() {
                Ok(report) => log::info!("SIGHUP: reloaded: {report}"),
                Err(e) => log::error!("SIGHUP: reload refused, nothing changed: {e}"),
            }
        } else if stopping {
            std::process::exit(130);
        } else {
            log::info!("signal {signal}: shutting down (again to exit at once)");
            trigger.shutdown();
            stopping = true;
        }
    }
}
