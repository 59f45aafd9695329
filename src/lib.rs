//! parlor: a multi-client chat server (and echo server) over newline-delimited JSON.
//!
//! One poller thread owns every socket's readiness; a pool of workers reads, parses
//! and handles frames; password hashing has its own small pool. See `docs/protocol.md`
//! for the wire protocol and `docs/architecture.md` for how the pieces fit.

mod accounts;
mod chat;
pub mod client;
pub mod config;
mod conn;
mod echo;
pub mod error_code;
mod framing;
mod hasher;
mod poller;
mod protocol;
mod reactor;
mod room;
mod server;
mod service;
mod store;
pub mod terminal;
mod worker;

pub use client::{
    Client, ClientError, Event, HistoryQuery, Joined, Message, RoomInfo, Sent, Whoami,
};
pub use config::{Config, Mode, Storage};
pub use error_code::ErrorCode;
pub use server::{Server, ServerError, ServerHandle, ShutdownTrigger};
pub use store::{StoreError, SyncMode};
