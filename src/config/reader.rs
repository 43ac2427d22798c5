//! Typed readers over the variable map, and the error that names a bad variable.

use std::{collections::HashMap, num::NonZeroU32, path::PathBuf, str::FromStr, time::Duration};

use governor::Quota;

/// A setting that could not be used; names the variable and says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {expected}")]
pub struct ConfigError {
    /// The variable's name (or the `.env` file's path).
    pub variable: String,
    /// The value found.
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

/// Typed readers over the variable map: absent variables take their defaults, present ones
/// must parse, or the error names them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Vars<'a>(pub(super) &'a HashMap<String, String>);

impl Vars<'_> {
    pub(super) fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim())
    }

    pub(super) fn error(&self, name: &str, expected: &str) -> ConfigError {
        ConfigError {
            variable: name.to_owned(),
            value: self.raw(name).unwrap_or_default().to_owned(),
            expected: expected.to_owned(),
        }
    }

    pub(super) fn parse<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| self.error(name, expected)),
        }
    }

    pub(super) fn positive<T: FromStr + PartialOrd + Default>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        let value = self.parse(name, default, "a whole number greater than 0")?;
        if value > T::default() {
            Ok(value)
        } else {
            Err(self.error(name, "a whole number greater than 0"))
        }
    }

    pub(super) fn fraction(&self, name: &str, default: f64) -> Result<f64, ConfigError> {
        let expected = "a number from 0 to 1, like 0.5";
        let value: f64 = self.parse(name, default, expected)?;
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(self.error(name, expected))
        }
    }

    pub(super) fn duration(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let expected = "a duration greater than 0, like 500ms, 30s, 5m or 2h";
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => match humantime::parse_duration(raw) {
                Ok(d) if !d.is_zero() => Ok(d),
                _ => Err(self.error(name, expected)),
            },
        }
    }

    pub(super) fn nonempty(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        match self.raw(name) {
            None => Ok(default.to_owned()),
            Some("") => Err(self.error(name, "a non-empty value")),
            Some(raw) => Ok(raw.to_owned()),
        }
    }

    pub(super) fn host_port(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.nonempty(name, default)?;
        let expected = "host:port, like processor:50051 or 127.0.0.1:50051";
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| self.error(name, expected))?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        if host.is_empty() || !port_ok || host.contains(['/', ' ']) {
            return Err(self.error(name, expected));
        }
        Ok(value)
    }

    /// A rate in requests per second (0: off) and its burst (default: twice the rate).
    pub(super) fn quota(
        &self,
        name: &str,
        burst_name: &str,
        default: u32,
    ) -> Result<Option<Quota>, ConfigError> {
        let per_second: u32 = self.parse(
            name,
            default,
            "a whole number of requests per second (0: no limit)",
        )?;
        let Some(per_second) = NonZeroU32::new(per_second) else {
            return Ok(None);
        };
        let burst: u32 = self.positive(burst_name, per_second.get().saturating_mul(2))?;
        let burst = NonZeroU32::new(burst).expect("positive() refuses 0");
        Ok(Some(Quota::per_second(per_second).allow_burst(burst)))
    }

    /// A file that must exist when set; `None` when unset.
    pub(super) fn file(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        match self.raw(name) {
            None | Some("") => Ok(None),
            Some(raw) => {
                let path = PathBuf::from(raw);
                if path.is_file() {
                    Ok(Some(path))
                } else {
                    Err(self.error(name, "the path of a readable file"))
                }
            }
        }
    }

    /// One of `choices` (as written), else the default.
    pub(super) fn choice<'c>(
        &self,
        name: &str,
        choices: &[&'c str],
        default: &'c str,
    ) -> Result<&'c str, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => choices
                .iter()
                .find(|c| **c == raw)
                .copied()
                .ok_or_else(|| self.error(name, &format!("one of {}", choices.join(", ")))),
        }
    }

    pub(super) fn switch(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(_) => Err(self.error(name, "on or off")),
        }
    }
}
