//! The transport layer: sockets, readiness and queues, knowing nothing of what the
//! bytes mean.
//!
//! One poller thread (`poller`) owns every socket's readiness and hands ready
//! connections to the worker pool (`worker`); a connection (`conn`) holds its socket,
//! its buffers and its scheduling state; `reactor` is what they share (the poller, the
//! job queue, the clock, the connection map); `tls` wraps accepted sockets in rustls;
//! `fdlimit` fits the open-file limit to the connection cap; `metrics_endpoint` serves
//! `GET /metrics` on threads of its own, apart from the poller.
//!
//! `service` is the seam upward: a [`service::Service`] (the chat service, the echo
//! service) gets each connection's input and answers through the connection's queue.
//! `conn`, `reactor` and `service` refer to one another because they are one
//! type family: a `Conn<S>` is generic over the service that owns its session, and the
//! reactor schedules `Conn<S>` jobs; nothing outside this folder depends on the cycle.

pub(crate) mod conn;
pub(crate) mod fdlimit;
pub(crate) mod metrics_endpoint;
pub(crate) mod poller;
pub(crate) mod reactor;
pub(crate) mod service;
pub(crate) mod tls;
pub(crate) mod worker;
