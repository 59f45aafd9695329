//! parlor: a multi-client chat server (and echo server) over newline-delimited JSON,
//! and a library to write your own multi-client server without writing the event loop.
//!
//! One poller thread owns every socket's readiness; a pool of workers reads, parses
//! and handles frames; password hashing has its own small pool; an embedded SQLite
//! store keeps everything (or nothing, in memory). The wire protocol is in
//! `docs/protocol.md`, the design in `docs/architecture.md`.
//!
//! # A server with your own command, in a dozen lines
//!
//! ```
//! use parlor::{CommandError, Context, Server};
//! use serde_json::{Value, json};
//!
//! fn shout(req: Value, cx: &mut Context<'_>) -> Result<Value, CommandError> {
//!     let text = req["text"].as_str().ok_or(CommandError::new("bad_request", "no `text`"))?;
//!     let from = cx.user().unwrap_or("someone");
//!     Ok(json!({ "text": format!("{from} says {}", text.to_uppercase()) }))
//! }
//!
//! let server = Server::builder().addr("127.0.0.1:0").in_memory().command("shout", shout).build()?;
//! let addr = server.local_addr();
//! let handle = server.spawn(); // runs on background threads until shut down or dropped
//! # let mut client = parlor::Client::connect(addr)?;
//! # assert_eq!(client.request("shout", json!({"text": "hi"}))?["text"], "someone says HI");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A client talking to it
//!
//! ```
//! # use parlor::{CommandError, Context, Server};
//! # use serde_json::{Value, json};
//! # fn shout(req: Value, cx: &mut Context<'_>) -> Result<Value, CommandError> {
//! #     let text = req["text"].as_str().ok_or(CommandError::new("bad_request", "no `text`"))?;
//! #     let from = cx.user().unwrap_or("someone");
//! #     Ok(json!({ "text": format!("{from} says {}", text.to_uppercase()) }))
//! # }
//! # let server = Server::builder().addr("127.0.0.1:0").in_memory()
//! #     .configure(|c| c.bcrypt_cost = 4).command("shout", shout).build()?;
//! # let addr = server.local_addr();
//! # let _handle = server.spawn();
//! use parlor::Client;
//!
//! let mut client = Client::connect(addr)?;
//! client.signup("ada", "correct horse")?;
//! client.login("ada", "correct horse")?;
//! let answer = client.request("shout", json!({ "text": "hello" }))?;
//! assert_eq!(answer["text"], "ada says HELLO");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Commands can also send to rooms and users ([`Context`]), and hooks see
//! connections open and close, logins, and every room message before it is sent (and
//! may refuse it): see [`ServerBuilder`]. `examples/custom_server.rs` is a complete
//! dice server.
//!
//! # Features
//!
//! `cli` (on by default): the `parlor` binary, the terminal client (`parlor::terminal`) and
//! certificate generation (`parlor::certs`), with the crates only they use (rustyline,
//! rpassword, rcgen, argh, env_logger, signal-hook, jiff). An embedder that needs only
//! the server and the client turns it off: `parlor = { version = "...",
//! default-features = false }`.

#![warn(missing_docs)]

mod chat;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod config;
mod echo;
pub mod error_code;
#[doc(hidden)]
pub mod fuzzing;
mod live;
mod metrics;
pub mod offline;
mod protocol;
mod reload;
mod server;
mod store;
mod transport;

pub use chat::command::{CommandError, Context, RoomMessage};
#[cfg(feature = "cli")]
pub use cli::{certs, terminal};
pub use client::{
    Ban, Client, ClientError, Conversation, CreateOptions, DirectMessage, DmSent, Event, Hello,
    HistoryQuery, Joined, Limits, Message, MessageChanges, Place, PresenceStatus, Role, RoomInfo,
    SendOptions, Sent, Target, Unread, UnreadCount, Whoami,
};
pub use config::SyncMode;
pub use config::{Config, Mode, Signup, Storage, TlsConfig};
pub use error_code::ErrorCode;
pub use reload::{ReloadError, ReloadReport, Reloader};
pub use server::{Server, ServerBuilder, ServerError, ServerHandle, ShutdownTrigger};
pub use store::StoreError;
pub use store::backup::{backup, restore};
