//! `parlor backup` and `parlor restore`: the command-line side of
//! [`crate::backup`] and [`crate::restore`].

use std::path::PathBuf;

use argh::FromArgs;

/// Copy a server's database to FILE, consistently, while it runs (SQLite's online
/// backup API); the copy is written beside FILE and renamed into place.
#[derive(FromArgs)]
#[argh(subcommand, name = "backup")]
pub struct BackupArgs {
    /// the server's data directory (required)
    #[argh(option)]
    pub data_dir: PathBuf,
    /// the backup file to write (required; replaced if it exists)
    #[argh(option)]
    pub out: PathBuf,
}

/// Put a backup in place as the database of a stopped server's data directory
/// (refused while a server holds it). A server started on it migrates an older
/// schema.
#[derive(FromArgs)]
#[argh(subcommand, name = "restore")]
pub struct RestoreArgs {
    /// the backup file, from `parlor backup` (required)
    #[argh(option)]
    pub from: PathBuf,
    /// the data directory to restore into, created if missing (required)
    #[argh(option)]
    pub data_dir: PathBuf,
}

/// Runs `parlor backup`; the sentence to print, or the error's.
pub fn run_backup(args: &BackupArgs) -> Result<String, String> {
    let version = crate::backup(&args.data_dir, &args.out).map_err(|e| e.to_string())?;
    Ok(format!(
        "backed up {} to {} (schema {version})",
        args.data_dir.display(),
        args.out.display()
    ))
}

/// Runs `parlor restore`; the sentence to print, or the error's.
pub fn run_restore(args: &RestoreArgs) -> Result<String, String> {
    let version = crate::restore(&args.from, &args.data_dir).map_err(|e| e.to_string())?;
    Ok(format!(
        "restored {} into {} (schema {version}); start the server on it",
        args.from.display(),
        args.data_dir.display()
    ))
}
