//! What an operator can do to a data directory while no server runs on it:
//! `parlor admin set-password`, for an operator locked out of the server.

use std::path::Path;

use crate::chat::{MAX_PASSWORD, MIN_PASSWORD};
use crate::store::{self, StoreError};

/// Why an offline change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// The password breaks `signup`'s rule.
    #[error("a password is {MIN_PASSWORD}-{MAX_PASSWORD} bytes")]
    WeakPassword,
    /// No account has that name.
    #[error("there is no user `{0}` in this data directory")]
    NoSuchUser(String),
    /// The data directory cannot be used: most often a server is running on it
    /// ([`StoreError::Locked`]).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// bcrypt failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Sets `user`'s password in the data directory `dir` (hashed at `bcrypt_cost`, 4-31)
/// and revokes every session of the user, as `admin_set_password` does on a running
/// server. Refused while a server holds the directory. Returns how many sessions were
/// revoked.
pub fn set_password(
    dir: &Path,
    user: &str,
    password: &str,
    bcrypt_cost: u32,
) -> Result<usize, OfflineError> {
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
        return Err(OfflineError::WeakPassword);
    }
    let hash =
        bcrypt::hash(password, bcrypt_cost).map_err(|e| OfflineError::Hash(e.to_string()))?;
    store::set_password_offline(dir, user, &hash)?
        .ok_or_else(|| OfflineError::NoSuchUser(user.to_owned()))
}
