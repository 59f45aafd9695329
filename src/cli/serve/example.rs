//! `parlor config example`: a commented config file with every key and its default,
//! from one table. A test checks that every `serve` flag has a row and that the
//! printed file parses back to the defaults.

/// One key of the config file.
struct Key {
    name: &'static str,
    /// The default as a TOML value; `None`: unset by default (the line is commented
    /// out, with `sample` as an example value).
    default: Option<&'static str>,
    sample: &'static str,
    /// Whether a reload (SIGHUP) applies a change without a restart.
    live: bool,
    about: &'static str,
}

const fn key(name: &'static str, default: &'static str, live: bool, about: &'static str) -> Key {
    Key {
        name,
        default: Some(default),
        sample: default,
        live,
        about,
    }
}

const fn unset(name: &'static str, sample: &'static str, live: bool, about: &'static str) -> Key {
    Key {
        name,
        default: None,
        sample,
        live,
        about,
    }
}

const KEYS: &[Key] = &[
    key(
        "addr",
        "\"127.0.0.1:7878\"",
        false,
        "address to listen on, HOST:PORT",
    ),
    key(
        "data-dir",
        "\"parlor-data\"",
        false,
        "directory for the server's data",
    ),
    key(
        "sync",
        "\"normal\"",
        false,
        "`normal` survives a process crash, `full` also power loss",
    ),
    unset(
        "tls-cert",
        "\"/etc/parlor/fullchain.pem\"",
        true,
        "TLS certificate chain, PEM (re-read on reload)",
    ),
    unset(
        "tls-key",
        "\"/etc/parlor/privkey.pem\"",
        true,
        "TLS private key, PEM (re-read on reload)",
    ),
    unset(
        "tls-listen",
        "\"0.0.0.0:7879\"",
        false,
        "serve TLS here and keep `addr` plain",
    ),
    unset(
        "metrics-addr",
        "\"127.0.0.1:9100\"",
        false,
        "serve /metrics, /healthz and /readyz here",
    ),
    key(
        "in-memory",
        "false",
        false,
        "keep everything in memory (not with data-dir)",
    ),
    key("echo", "false", false, "echo mode instead of chat"),
    unset(
        "workers",
        "8",
        false,
        "worker threads (default: 4 per CPU, at most 64)",
    ),
    key(
        "bcrypt-cost",
        "12",
        false,
        "bcrypt cost for new password hashes, 4-31",
    ),
    key("hash-threads", "1", false, "threads that hash passwords"),
    key(
        "max-hash-wait",
        "2.0",
        false,
        "seconds a hashing op may wait before `server_busy`",
    ),
    // The three sizes follow one another when left out (a larger frame makes room
    // for a larger text...): set in the file, they would stop following a flag.
    unset(
        "max-frame",
        "65536",
        true,
        "longest frame in bytes (new connections); default 65536, fitted to max-text and max-outbound when those are set",
    ),
    unset(
        "max-outbound",
        "4194304",
        false,
        "bytes queued for one client before it is cut off; default 4194304, raised to fit max-frame",
    ),
    unset(
        "max-text",
        "16384",
        true,
        "longest message text in bytes; default 16384, lowered to fit max-frame",
    ),
    key(
        "history-len",
        "1000",
        false,
        "messages per room kept in memory",
    ),
    key(
        "idle-timeout",
        "300",
        true,
        "seconds of silence before a connection is closed",
    ),
    key(
        "session-ttl",
        "86400",
        false,
        "seconds an unused session token stays valid",
    ),
    key(
        "max-conns",
        "10000",
        true,
        "most connections at once; more than at start-up needs a restart",
    ),
    key(
        "max-conns-per-ip",
        "64",
        true,
        "most connections from one address (0: no limit)",
    ),
    key(
        "max-frame-rate",
        "1000",
        true,
        "lines per second per connection (new connections; 0: no limit)",
    ),
    key("max-rooms", "100000", true, "most rooms on the server"),
    key(
        "max-rooms-per-user",
        "1000",
        true,
        "most rooms one user may create (0: no limit)",
    ),
    key(
        "max-room-members",
        "10000",
        true,
        "most members in one room",
    ),
    key(
        "operators",
        "[]",
        true,
        "server operators, by account name (flag: --operator)",
    ),
    key(
        "signup",
        "\"open\"",
        true,
        "`open`, or `closed`: `signup` answers `forbidden`",
    ),
    key(
        "log-level",
        "\"info\"",
        true,
        "error, warn, info, debug or trace (RUST_LOG wins)",
    ),
];

/// The example file: each key with a comment, its default, and whether it reloads.
pub fn example() -> String {
    let mut out = String::from(
        "# parlor serve --config FILE: every key is a `serve` flag without its dashes.\n\
         # A flag given on the command line wins over this file. SIGHUP re-reads it:\n\
         # keys marked (live) change at once, the others need a restart.\n",
    );
    for key in KEYS {
        let live = if key.live { " (live)" } else { "" };
        out.push_str(&format!("\n# {}{live}\n", key.about));
        match key.default {
            Some(default) => out.push_str(&format!("{} = {default}\n", key.name)),
            None => out.push_str(&format!("# {} = {}\n", key.name, key.sample)),
        }
    }
    out
}

/// The names of every key, in the file's order.
pub fn key_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|key| key.name)
}
