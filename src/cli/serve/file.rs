//! Reading `parlor serve --config FILE`: TOML whose keys are the flags' names.

use std::path::Path;

use crate::cli::serve::ServeArgs;

/// The settings in the TOML file at `path`. Errors: the file cannot be read, or is
/// not TOML, or has an unknown key or a value of the wrong type; toml's message names
/// the line and column and shows it.
pub fn read(path: &Path) -> Result<ServeArgs, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// `flags` over the file they name with `--config` (if any): what `parlor serve`
/// runs with, at start-up and on each reload.
pub fn with_file(flags: &ServeArgs) -> Result<ServeArgs, String> {
    match &flags.config {
        Some(path) => Ok(flags.clone().merge(read(path)?)),
        None => Ok(flags.clone()),
    }
}
