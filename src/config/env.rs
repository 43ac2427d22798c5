//! Where settings come from: the process environment, over a `.env` file of the working
//! directory. The file is read once, by [`load_dotenv`], into the process environment, so that
//! everything reads the same settings: this crate's [`super::Config`], the telemetry setup
//! (`RUST_LOG`, `TASK_LOG_FORMAT`) and the OpenTelemetry SDK (`OTEL_*`).

use std::{collections::HashMap, path::Path};

use super::ConfigError;

/// Adds the variables of the `.env` file at `path` to the process environment, keeping every
/// variable the environment already has (the environment wins). A missing file is no error.
///
/// Call it first thing in `main`, before any thread starts: changing the environment while
/// another thread reads it is unsound.
pub fn load_dotenv(path: &Path) -> Result<(), ConfigError> {
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(ConfigError {
            variable: path.display().to_string(),
            value: String::new(),
            expected: format!("a readable .env file of NAME=value lines ({e})"),
        }),
    }
}

/// The process environment as a map (variables that are not valid UTF-8 are left out: none
/// of ours can be).
pub fn vars() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
