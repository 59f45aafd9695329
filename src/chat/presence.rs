//! Presence and typing state (issue 17 items 6 and 7): neither is stored.
//!
//! A user is online from their first connection's login until their last connection
//! has been gone for `OFFLINE_GRACE`: one who reconnects within it never shows
//! offline (no flapping). `away` lasts until `back` or until they go offline.
//! A typing indicator lasts `TYPING_TTL` after its last renewal; renewals are relayed
//! at most once per `TYPING_EVERY` per user and place unless `active` changes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// How long after the last connection goes `offline` is announced.
pub(crate) const OFFLINE_GRACE: Duration = Duration::from_secs(5);
/// How long a typing indicator lasts without renewal.
pub(crate) const TYPING_TTL: Duration = Duration::from_secs(6);
/// At most one relayed renewal per user and place in this time.
pub(crate) const TYPING_EVERY: Duration = Duration::from_secs(1);

/// A user's status as `members` and the `presence` event show it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
}

#[derive(Default)]
struct UserState {
    online: bool,
    /// `Some`: away, with its message if any.
    away: Option<Option<String>>,
    /// Bumped whenever an announced `offline` must not happen any more.
    generation: u64,
}

struct TypingState {
    active: bool,
    relayed: Instant,
    expires: Instant,
    generation: u64,
}

/// What a `typing` request leads to.
pub(crate) struct TypingStep {
    /// Relay it to the others now.
    pub(crate) relay: bool,
    /// Check for expiry (with this generation) `TYPING_TTL` from now.
    pub(crate) expiry: Option<u64>,
}

/// What an expiry check finds.
pub(crate) enum Expiry {
    /// Renewed meanwhile: check again after this long.
    Later(Duration),
    /// Expired: send `active: false`.
    Now,
    /// Stopped or superseded: nothing to do.
    Gone,
}

/// Every user's presence and typing indicators.
#[derive(Default)]
pub(crate) struct Presence {
    users: Mutex<HashMap<String, UserState>>,
    /// (user, place key) -> indicator.
    typing: Mutex<HashMap<(String, String), TypingState>>,
}

impl Presence {
    /// The user's status.
    pub(crate) fn status(&self, user: &str) -> Status {
        let users = self.users.lock();
        match users.get(user) {
            Some(UserState {
                online: true,
                away: Some(message),
                ..
            }) => Status {
                status: "away",
                message: message.clone(),
            },
            Some(UserState { online: true, .. }) => Status {
                status: "online",
                message: None,
            },
            _ => Status {
                status: "offline",
                message: None,
            },
        }
    }

    /// The user's first connection logged in: true if that makes them online (false
    /// if they still were, an `offline` pending being called off).
    pub(crate) fn arrived(&self, user: &str) -> bool {
        let mut users = self.users.lock();
        let state = users.entry(user.to_owned()).or_default();
        state.generation += 1;
        !std::mem::replace(&mut state.online, true)
    }

    /// The user's last connection went: the generation an `offline` after the grace
    /// must still find (see `departed`).
    pub(crate) fn leaving(&self, user: &str) -> u64 {
        let mut users = self.users.lock();
        let state = users.entry(user.to_owned()).or_default();
        state.generation += 1;
        state.generation
    }

    /// The grace ran out: true if the user is now offline (nobody came back).
    pub(crate) fn departed(&self, user: &str, generation: u64) -> bool {
        let mut users = self.users.lock();
        match users.get(user) {
            Some(state) if state.generation == generation && state.online => {
                users.remove(user);
                true
            }
            _ => false,
        }
    }

    /// Sets (`Some`) or clears (`None`) `away`; returns the status to announce, if
    /// it changed.
    pub(crate) fn set_away(&self, user: &str, away: Option<Option<String>>) -> Option<Status> {
        {
            let mut users = self.users.lock();
            let state = users.entry(user.to_owned()).or_default();
            if state.away == away {
                return None;
            }
            state.away = away;
        }
        Some(self.status(user))
    }

    /// A `typing` request of `user` at `place` (a key naming the room or partner).
    pub(crate) fn typing(&self, user: &str, place: String, active: bool) -> TypingStep {
        let now = Instant::now();
        let mut typing = self.typing.lock();
        let key = (user.to_owned(), place);
        match (typing.get_mut(&key), active) {
            (Some(state), true) if state.active => {
                state.expires = now + TYPING_TTL;
                if now.duration_since(state.relayed) < TYPING_EVERY {
                    return TypingStep {
                        relay: false,
                        expiry: None,
                    };
                }
                state.relayed = now;
                state.generation += 1;
                TypingStep {
                    relay: true,
                    expiry: Some(state.generation),
                }
            }
            (_, true) => {
                let generation = typing.get(&key).map_or(0, |s| s.generation) + 1;
                typing.insert(
                    key,
                    TypingState {
                        active: true,
                        relayed: now,
                        expires: now + TYPING_TTL,
                        generation,
                    },
                );
                TypingStep {
                    relay: true,
                    expiry: Some(generation),
                }
            }
            (Some(state), false) if state.active => {
                typing.remove(&key);
                TypingStep {
                    relay: true,
                    expiry: None,
                }
            }
            (_, false) => TypingStep {
                relay: false,
                expiry: None,
            },
        }
    }

    /// Whether the indicator checked with `generation` has expired.
    pub(crate) fn typing_expiry(&self, user: &str, place: &str, generation: u64) -> Expiry {
        let now = Instant::now();
        let mut typing = self.typing.lock();
        let key = (user.to_owned(), place.to_owned());
        match typing.get(&key) {
            Some(state) if state.generation == generation && state.active => {
                if state.expires > now {
                    Expiry::Later(state.expires - now)
                } else {
                    typing.remove(&key);
                    Expiry::Now
                }
            }
            _ => Expiry::Gone,
        }
    }
}
