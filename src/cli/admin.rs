//! `parlor admin`: what an operator does to a stopped server's data directory, such
//! as setting a password when locked out of the server.

use std::io::{self, IsTerminal};
use std::path::Path;

use crate::cli::terminal::read_password;
use crate::offline;

/// `parlor admin set-password`: reads the new password as `parlor chat` reads one
/// (from the terminal without echo, twice; else the first line of stdin, for
/// scripts), sets it in `data_dir` and revokes the user's sessions. Refused while a
/// server runs on the directory. Returns a sentence saying what was done, or why not.
pub fn set_password(data_dir: &Path, user: &str, bcrypt_cost: u32) -> Result<String, String> {
    let tty = io::stdin().is_terminal();
    let password = read_password(user, tty).map_err(|e| e.to_string())?;
    if tty && read_password(&format!("{user} (again)"), tty).map_err(|e| e.to_string())? != password
    {
        return Err("the two passwords differ; nothing was changed".into());
    }
    let revoked =
        offline::set_password(data_dir, user, &password, bcrypt_cost).map_err(|e| e.to_string())?;
    Ok(format!(
        "the password of {user} is set; {revoked} session(s) revoked"
    ))
}
