//! What the `parlor` binary is made of besides the server: the terminal client
//! (`parlor chat`) and certificate generation (`parlor gen-cert`). Both sit on top of
//! the library's public API ([`crate::Client`]), never on the server's internals.

pub mod certs;
pub mod terminal;
