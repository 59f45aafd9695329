//! The settings a running server may change without a restart (a reload): limits,
//! who is an operator, whether signup is open, and the TLS certificate.
//!
//! The hot path reads a limit with one relaxed atomic load; nothing here orders other
//! memory, because a reload only has to be seen soon, not at the same instant by every
//! thread. The rest of the configuration is fixed at start-up.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::RwLock;

use crate::config::{Config, Signup};

/// The live settings, shared by the transport, the chat service and the reloader.
pub(crate) struct Live {
    max_frame: AtomicUsize,
    max_text: AtomicUsize,
    max_frame_rate: AtomicU32,
    idle_timeout_ms: AtomicU64,
    max_conns: AtomicUsize,
    max_conns_per_ip: AtomicUsize,
    max_rooms: AtomicUsize,
    max_rooms_per_user: AtomicUsize,
    max_room_members: AtomicUsize,
    signup_open: AtomicBool,
    /// Accounts that may act as owner in any room (`--operator`, config `operators`).
    operators: RwLock<HashSet<String>>,
    /// What a TLS listener's next handshake uses; open connections keep the one they
    /// started with (rustls holds its own `Arc`).
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
}

impl Live {
    /// The live part of `config`, with `tls` as the certificate for new handshakes.
    pub(crate) fn new(config: &Config, tls: Option<Arc<rustls::ServerConfig>>) -> Live {
        let live = Live {
            max_frame: AtomicUsize::new(0),
            max_text: AtomicUsize::new(0),
            max_frame_rate: AtomicU32::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            max_conns: AtomicUsize::new(0),
            max_conns_per_ip: AtomicUsize::new(0),
            max_rooms: AtomicUsize::new(0),
            max_rooms_per_user: AtomicUsize::new(0),
            max_room_members: AtomicUsize::new(0),
            signup_open: AtomicBool::new(true),
            operators: RwLock::default(),
            tls: RwLock::new(None),
        };
        live.set(config, tls);
        live
    }

    /// Takes every live setting from `config` at once (each is seen by the next
    /// request or connection that reads it). `tls`: the new certificate, if any.
    pub(crate) fn set(&self, config: &Config, tls: Option<Arc<rustls::ServerConfig>>) {
        self.max_frame.store(config.max_frame, Relaxed);
        self.max_text.store(config.max_text, Relaxed);
        self.max_frame_rate.store(config.max_frame_rate, Relaxed);
        let idle_ms = u64::try_from(config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        self.idle_timeout_ms.store(idle_ms, Relaxed);
        self.max_conns.store(config.max_conns, Relaxed);
        self.max_conns_per_ip
            .store(config.max_conns_per_ip, Relaxed);
        self.max_rooms.store(config.max_rooms, Relaxed);
        self.max_rooms_per_user
            .store(config.max_rooms_per_user, Relaxed);
        self.max_room_members
            .store(config.max_room_members, Relaxed);
        self.signup_open
            .store(config.signup == Signup::Open, Relaxed);
        *self.operators.write() = config.operators.iter().cloned().collect();
        if tls.is_some() {
            *self.tls.write() = tls;
        }
    }

    /// Longest frame in bytes, newline included (for connections opened from now).
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Relaxed)
    }

    /// Longest message text in bytes.
    pub(crate) fn max_text(&self) -> usize {
        self.max_text.load(Relaxed)
    }

    /// Lines per second per connection (0: no limit; for connections opened from now).
    pub(crate) fn max_frame_rate(&self) -> u32 {
        self.max_frame_rate.load(Relaxed)
    }

    /// How long a silent connection stays open.
    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Relaxed))
    }

    /// Most connections open at once.
    pub(crate) fn max_conns(&self) -> usize {
        self.max_conns.load(Relaxed)
    }

    /// Most connections from one address (0: no limit).
    pub(crate) fn max_conns_per_ip(&self) -> usize {
        self.max_conns_per_ip.load(Relaxed)
    }

    /// Most rooms on the server.
    pub(crate) fn max_rooms(&self) -> usize {
        self.max_rooms.load(Relaxed)
    }

    /// Most rooms one user may create (0: no limit).
    pub(crate) fn max_rooms_per_user(&self) -> usize {
        self.max_rooms_per_user.load(Relaxed)
    }

    /// Most members of one room.
    pub(crate) fn max_room_members(&self) -> usize {
        self.max_room_members.load(Relaxed)
    }

    /// Whether `signup` makes accounts (`--signup open`).
    pub(crate) fn signup_open(&self) -> bool {
        self.signup_open.load(Relaxed)
    }

    /// Whether `name` is a server operator.
    pub(crate) fn is_operator(&self, name: &str) -> bool {
        self.operators.read().contains(name)
    }

    /// The certificate the next TLS handshake uses, if the server has one.
    pub(crate) fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().clone()
    }
}
