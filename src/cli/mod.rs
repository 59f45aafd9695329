//! What the `parlor` binary is made of besides the server: the terminal client
//! (`parlor chat`), certificate generation (`parlor gen-cert`) and the offline
//! operator commands (`parlor admin`). They sit on the library's public API
//! ([`crate::Client`], [`crate::offline`]), never on the server's internals.

pub mod admin;
pub mod certs;
pub mod terminal;
