//! A setting that must never be printed (a password): `Debug` says whether it is set, never what
//! it is, and there is no `Display`.

use std::fmt;

/// A secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_value() {
        let secret = super::Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(redacted)");
        assert_eq!(
            format!("{:?}", Some(secret.clone())),
            "Some(Secret(redacted))"
        );
        assert_eq!(secret.expose(), "hunter2");
    }
}
