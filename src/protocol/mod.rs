//! The protocol layer: bytes to typed requests, and answers and events to bytes.
//!
//! `framing` cuts a byte stream into lines with bounded memory; `envelope` reads a
//! line's `id` and `op`; `request` parses the rest into a typed [`request::Request`]
//! (`admin` the operators' ops, `edits` message changes); `json` encodes answers and
//! events. Nothing here knows about sockets or chat state: the chat layer calls it,
//! the transport never does.

pub(crate) mod admin;
pub(crate) mod edits;
pub(crate) mod envelope;
pub(crate) mod framing;
pub(crate) mod json;
pub(crate) mod request;
