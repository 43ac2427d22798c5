//! The operator's console: whether it is served, with or without its actions, and where the
//! Jaeger UI is for links from a task to its trace.

use super::{ConfigError, reader::Vars, vars};

/// What the console serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Pages and actions (cancel, create again).
    On,
    /// Pages only.
    ReadOnly,
    /// Nothing: the metrics listener serves `/metrics` alone.
    Off,
}

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// What it serves.
    pub mode: ConsoleMode,
    /// The Jaeger UI's base URL, without a trailing `/` (`None`: no trace links).
    pub jaeger_url: Option<String>,
}

impl ConsoleConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        let mode = match v.choice(vars::DASHBOARD, &["on", "readonly", "off"], "on")? {
            "readonly" => ConsoleMode::ReadOnly,
            "off" => ConsoleMode::Off,
            _ => ConsoleMode::On,
        };
        let jaeger_url = match v.raw(vars::JAEGER_URL) {
            None | Some("") => None,
            Some(url) => {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                // Pasted into an href: no character that could end the attribute or the URL.
                let plain = |c: char| c.is_ascii_graphic() && !"\"'<>`\\".contains(c);
                match rest {
                    Some(rest) if !rest.is_empty() && url.chars().all(plain) => {
                        Some(url.trim_end_matches('/').to_owned())
                    }
                    _ => {
                        return Err(v.error(
                            vars::JAEGER_URL,
                            "an http:// or https:// URL of the Jaeger UI, like http://localhost:16686",
                        ));
                    }
                }
            }
        };
        Ok(Self { mode, jaeger_url })
    }
}
