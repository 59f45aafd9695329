//! `parlor serve`'s settings: the flags, the config file, its example, and turning
//! them into a [`crate::Config`].

mod args;
mod example;
mod file;
mod settings;

pub use args::ServeArgs;
pub use example::{example, key_names};
pub use file::{read, with_file};
pub use settings::{LOG_LEVELS, log_level, to_config};

#[cfg(test)]
mod tests;
