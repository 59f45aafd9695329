//! What the `parlor` binary is made of besides the server: the terminal client
//! (`parlor chat`), certificate generation (`parlor gen-cert`) and `parlor serve`'s
//! flags and config file. All sit on top of the library's public API
//! ([`crate::Client`], [`crate::Config`]), never on the server's internals.

pub mod backup;
pub mod certs;
pub mod serve;
pub mod terminal;
