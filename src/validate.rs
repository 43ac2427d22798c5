//! Checks of CreateTask's `original_file_key` (the README's "The contract in brief") and how a
//! valid key maps to a path. Besides the contract's text rules, keys holding bidirectional
//! overrides or zero-width characters are refused (they make a key read as another), and — with
//! `TASK_STORAGE_CHECK=resolve`, the default where the root is mounted — a key whose path leads
//! out of the root through a symlink. [`StorageRoot::open`] opens a key's file without
//! following any symlink out of the root (the reference Processor reads files that way).

use std::{
    fs::File,
    io,
    path::{Component, Path, PathBuf},
};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::config::StorageCheck;

/// The longest key accepted, in bytes.
pub const MAX_FILE_KEY_BYTES: usize = 1024;

/// The shared storage root (`LOCAL_STORAGE_PATH`), kept both as configured and as an absolute
/// path so that absolute keys can be checked against it.
#[derive(Clone, Debug)]
pub struct StorageRoot {
    configured: PathBuf,
    absolute: PathBuf,
    /// The root with every symlink resolved, when keys are checked on disk.
    resolved: Option<PathBuf>,
}

/// Characters that make a key display as another: bidirectional embeddings, overrides, isolates
/// and marks, and zero-width characters.
pub const DECEPTIVE_CHARACTERS: &[char] = &[
    '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}',
    '\u{202C}', '\u{202D}', '\u{202E}', '\u{2060}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    '\u{FEFF}',
];

impl StorageRoot {
    /// Wraps the configured root (a relative root is taken relative to the working directory),
    /// checking keys on disk if the root exists here (`StorageCheck::Auto`).
    pub fn new(configured: impl Into<PathBuf>) -> Self {
        Self::with_check(configured, StorageCheck::Auto)
    }

    /// [`StorageRoot::new`], checking keys as `check` says.
    pub fn with_check(configured: impl Into<PathBuf>, check: StorageCheck) -> Self {
        let configured = configured.into();
        let absolute = std::path::absolute(&configured).unwrap_or_else(|_| configured.clone());
        let resolved = match check {
            StorageCheck::Text => None,
            StorageCheck::Auto | StorageCheck::Resolve => std::fs::canonicalize(&configured).ok(),
        };
        if check == StorageCheck::Resolve && resolved.is_none() {
            tracing::warn!(root = %configured.display(), "TASK_STORAGE_CHECK=resolve but the storage root cannot be resolved here; keys are checked as text only");
        }
        Self {
            configured,
            absolute: absolute
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect(),
            resolved,
        }
    }

    /// Whether keys are checked on disk (symlinks resolved).
    pub fn resolves(&self) -> bool {
        self.resolved.is_some()
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
        if let Some(bad) = key.chars().find(|c| DECEPTIVE_CHARACTERS.contains(c)) {
            return Err(format!(
                "original_file_key contains U+{:04X}, a bidirectional or zero-width character that makes a key read as another; it is not allowed",
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
        if let Some(root) = &self.resolved
            && !self.stays_under(root, path)
        {
            return Err(format!(
                "original_file_key {key:?} leads out of the storage root {} through a symbolic link",
                self.configured.display()
            ));
        }
        Ok(())
    }

    /// Whether the part of `path` that exists, symlinks resolved, is under `root` (a key whose
    /// file does not exist yet is judged by its deepest existing directory).
    fn stays_under(&self, root: &Path, path: &Path) -> bool {
        let mut existing = self.root_relative(path);
        loop {
            match std::fs::canonicalize(&existing) {
                Ok(real) => return real.starts_with(root),
                Err(_) => {
                    if !existing.pop() {
                        return true;
                    }
                }
            }
        }
    }

    /// The key's path, under the root as configured.
    fn root_relative(&self, path: &Path) -> PathBuf {
        let mut full = self.configured.clone();
        full.extend(self.relative_part(path));
        full
    }

    /// Opens a (valid) key's file for reading, never following a symlink out of the root (nor a
    /// `/proc` magic link): the kernel resolves the path beneath the root (Linux `openat2`), so
    /// links inside the root must be relative — an absolute one is refused wherever it points.
    pub fn open(&self, key: &str) -> io::Result<File> {
        let root = File::open(&self.configured)?;
        let relative: PathBuf = self.relative_part(Path::new(key)).collect();
        let fd = rustix::fs::openat2(
            &root,
            &relative,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(File::from(fd))
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
    fn deceptive_characters_are_refused() {
        for key in ["abc\u{202E}4pm.exe", "a\u{200B}b.mp4", "\u{FEFF}x.mp4"] {
            let err = root().check_key(key).unwrap_err();
            assert!(
                err.contains("bidirectional or zero-width"),
                "{key:?}: {err}"
            );
        }
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused_when_keys_are_resolved() {
        let dir = std::env::temp_dir().join(format!("validate-{}", uuid::Uuid::new_v4()));
        let root_dir = dir.join("videos");
        std::fs::create_dir_all(root_dir.join("inside")).unwrap();
        std::fs::write(dir.join("secret"), b"s").unwrap();
        std::fs::write(root_dir.join("inside/a.mp4"), b"v").unwrap();
        std::os::unix::fs::symlink(&dir, root_dir.join("evil")).unwrap();
        std::os::unix::fs::symlink("inside", root_dir.join("alias")).unwrap();
        std::os::unix::fs::symlink(root_dir.join("inside"), root_dir.join("absolute")).unwrap();
        let resolving = StorageRoot::with_check(&root_dir, StorageCheck::Resolve);
        assert!(resolving.resolves());
        let err = resolving.check_key("evil/secret").unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(resolving.check_key("evil/not-there/x.mp4").is_err());
        assert_eq!(
            resolving.check_key("alias/a.mp4"),
            Ok(()),
            "a link inside the root is fine"
        );
        assert_eq!(resolving.check_key("inside/not-yet.mp4"), Ok(()));
        let text = StorageRoot::with_check(&root_dir, StorageCheck::Text);
        assert_eq!(text.check_key("evil/secret"), Ok(()), "text rules only");
        // Opening never follows the link out, whatever the check said.
        assert!(text.open("evil/secret").is_err());
        assert!(
            text.open("alias/a.mp4").is_ok(),
            "a relative link inside the root"
        );
        assert!(
            text.open("absolute/a.mp4").is_err(),
            "an absolute link is not followed, even to inside the root"
        );
        std::fs::remove_dir_all(dir).unwrap();
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
