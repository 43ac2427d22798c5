//! Checks of CreateTask's `original_file_key` (the README's "The contract in brief") and how a
//! valid key maps to a path.

use std::path::{Component, Path, PathBuf};

/// The longest key accepted, in bytes.
pub const MAX_FILE_KEY_BYTES: usize = 1024;

/// The shared storage root (`LOCAL_STORAGE_PATH`), kept both as configured and as an absolute
/// path so that absolute keys can be checked against it.
#[derive(Clone, Debug)]
pub struct StorageRoot {
    configured: PathBuf,
    absolute: PathBuf,
}

impl StorageRoot {
    /// Wraps the configured root; a relative root is taken relative to the working directory.
    pub fn new(configured: impl Into<PathBuf>) -> Self {
        let configured = configured.into();
        let absolute = std::path::absolute(&configured).unwrap_or_else(|_| configured.clone());
        Self {
            configured,
            absolute: absolute
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect(),
        }
    }

    /// The root as configured (`./data/videos`).
    pub fn configured(&self) -> &Path {
        &self.configured
    }

    /// Checks a key; the error says what is wrong in words a caller can act on.
    pub fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() {
            return Err("original_file_key is empty: give the video's path under the storage root, like abc/original.mp4".into());
        }
        if key.len() > MAX_FILE_KEY_BYTES {
            return Err(format!(
                "original_file_key is {} bytes long; the limit is {MAX_FILE_KEY_BYTES}",
                key.len()
            ));
        }
        if let Some(bad) = key.chars().find(|c| c.is_control()) {
            return Err(format!(
                "original_file_key contains the control character U+{:04X}; only printable characters are allowed",
                bad as u32
            ));
        }
        let path = Path::new(key);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "original_file_key {key:?} contains a '..' component; keys must stay under the storage root"
            ));
        }
        if key.ends_with('/') {
            return Err(format!(
                "original_file_key {key:?} ends with '/': it must name a file, not a directory"
            ));
        }
        if path.is_absolute() && !path.starts_with(&self.absolute) {
            return Err(format!(
                "original_file_key {key:?} is an absolute path outside the storage root {}",
                self.configured.display()
            ));
        }
        if self.relative_part(path).next().is_none() {
            return Err(format!(
                "original_file_key {key:?} names the storage root itself, not a file under it"
            ));
        }
        Ok(())
    }

    /// Where a (valid) key's file is: keys that start with the root (absolute, or as
    /// configured) are used as they are; others are taken under the root.
    pub fn resolve(&self, key: &str) -> PathBuf {
        let path = Path::new(key);
        if path.is_absolute() || self.starts_with_configured(path) {
            path.to_path_buf()
        } else {
            self.configured.join(path)
        }
    }

    /// The result file's key by the contract's convention: `{root}/{task_id}/result.mp4`.
    pub fn result_key(&self, task_id: &str) -> String {
        let root = self.configured.to_string_lossy();
        format!("{}/{task_id}/result.mp4", root.trim_end_matches('/'))
    }

    fn starts_with_configured(&self, path: &Path) -> bool {
        let root: Vec<_> = normal_components(&self.configured).collect();
        let mut parts = normal_components(path);
        !root.is_empty() && root.iter().all(|r| parts.next().as_ref() == Some(r))
    }

    /// The part of a key below the root (the whole key when it does not start with the root).
    fn relative_part<'a>(&self, path: &'a Path) -> impl Iterator<Item = Component<'a>> {
        let skip = if path.is_absolute() {
            normal_components(&self.absolute).count()
        } else if self.starts_with_configured(path) {
            normal_components(&self.configured).count()
        } else {
            0
        };
        normal_components(path).skip(skip)
    }
}

/// A path's named components, without `.` and the root.
fn normal_components(path: &Path) -> impl Iterator<Item = Component<'_>> {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> StorageRoot {
        StorageRoot::new("./data/videos")
    }

    #[test]
    fn accepts_both_spellings_of_the_contract() {
        for key in [
            "abc/original.mp4",
            "./data/videos/abc/original.mp4",
            "data/videos/abc/original.mp4",
            "video.mp4",
            "a b/ünïcödé.mp4",
        ] {
            assert_eq!(root().check_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn accepts_absolute_keys_inside_the_root() {
        let absolute = std::path::absolute("./data/videos/abc/original.mp4").unwrap();
        assert_eq!(root().check_key(absolute.to_str().unwrap()), Ok(()));
    }

    #[test]
    fn rejects_what_the_contract_lists() {
        let long = "a".repeat(MAX_FILE_KEY_BYTES + 1);
        for (key, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute path outside"),
            ("../secret.mp4", "'..'"),
            ("abc/../../x.mp4", "'..'"),
            ("./data/videos/../../x", "'..'"),
            ("abc\0.mp4", "control character"),
            ("abc\n.mp4", "control character"),
            ("abc\u{7f}.mp4", "control character"),
            (long.as_str(), "bytes long"),
            ("abc/", "not a directory"),
            ("./data/videos", "storage root itself"),
            (".", "storage root itself"),
        ] {
            let err = root().check_key(key).unwrap_err();
            assert!(err.contains(why), "{key:?}: {err}");
        }
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        assert_eq!(root().check_key(&"a".repeat(MAX_FILE_KEY_BYTES)), Ok(()));
    }

    #[test]
    fn resolves_relative_and_root_prefixed_keys_to_the_same_file() {
        let r = root();
        assert_eq!(
            r.resolve("abc/original.mp4"),
            Path::new("./data/videos/abc/original.mp4")
        );
        assert_eq!(
            r.resolve("./data/videos/abc/original.mp4"),
            Path::new("./data/videos/abc/original.mp4")
        );
    }

    #[test]
    fn result_key_follows_the_convention() {
        assert_eq!(root().result_key("id"), "./data/videos/id/result.mp4");
        assert_eq!(
            StorageRoot::new("/srv/v/").result_key("id"),
            "/srv/v/id/result.mp4"
        );
    }
}
