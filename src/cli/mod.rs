//! What the `parlor` binary is made of besides the server: the terminal client
//! (`parlor chat`), certificate generation (`parlor gen-cert`), `parlor serve`'s
//! flags and config file, and the offline operator commands (`parlor admin`,
//! `parlor backup`, `parlor restore`). They sit on the library's public API
//! ([`crate::Client`], [`crate::Config`], [`crate::offline`]), never on the server's
//! internals.

pub mod admin;
pub mod backup;
pub mod certs;
pub mod serve;
pub mod terminal;
