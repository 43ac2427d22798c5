//! Who may call what. The callers are listed in `TASK_AUTH_TOKENS_FILE`, one a line:
//!
//! ```text
//! # name      scope   credential
//! gateway     write   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! oncall      admin   cert:oncall.ops.example
//! ```
//!
//! A credential is the SHA-256 (hex) of a bearer token the caller sends as
//! `authorization: Bearer <token>` (the file holds no secret), or, over mTLS, `cert:<CN>`: a
//! client certificate with that common name. Scopes grow: `read` (GetTaskStatus, WatchTask,
//! ListTasks), `write` (+ CreateTask), `admin` (+ CancelTask and the console's actions). Tokens
//! are compared in constant time; the file is re-read when it changes (or on SIGHUP), and a file
//! that does not parse keeps the previous callers in force.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// What a caller may do; each scope includes those before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read tasks.
    Read,
    /// Read and create tasks.
    Write,
    /// Everything, cancelling tasks included.
    Admin,
}

impl Scope {
    /// The file's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Its name in the file.
    pub name: Arc<str>,
    /// What it may do.
    pub scope: Scope,
}

/// What a caller presented.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// A bearer token.
    Token(&'a str),
    /// The common name of a verified client certificate.
    Certificate(&'a str),
}

/// Why a line of the tokens file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {reason}")]
pub struct TokensFileError {
    file: String,
    line: usize,
    reason: String,
}

/// The callers of one version of the file.
#[derive(Default)]
pub struct Callers {
    tokens: Vec<(Caller, [u8; 32])>,
    certificates: Vec<(Caller, String)>,
}

impl fmt::Debug for Callers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callers")
            .field("tokens", &self.tokens.len())
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl Callers {
    /// Parses the file's text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, TokensFileError> {
        let mut callers = Self::default();
        for (i, line) in text.lines().enumerate() {
            let error = |reason: &str| TokensFileError {
                file: file.to_owned(),
                line: i + 1,
                reason: reason.to_owned(),
            };
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scope, credential] = fields[..] else {
                return Err(error(
                    "expected <name> <scope> <sha256 of the token, hex> or <name> <scope> cert:<CN>",
                ));
            };
            let scope =
                Scope::parse(scope).ok_or_else(|| error("the scope is read, write or admin"))?;
            let caller = Caller {
                name: name.into(),
                scope,
            };
            if callers.knows(name) {
                return Err(error("this name is given twice"));
            }
            match credential.strip_prefix("cert:") {
                Some("") => return Err(error("cert: needs the certificate's common name")),
                Some(common_name) => callers.certificates.push((caller, common_name.to_owned())),
                None => {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(credential, &mut hash).map_err(|_| {
                        error("the credential is 64 hex digits (the token's SHA-256) or cert:<CN>")
                    })?;
                    callers.tokens.push((caller, hash));
                }
            }
        }
        Ok(callers)
    }

    fn knows(&self, name: &str) -> bool {
        self.tokens.iter().any(|(c, _)| &*c.name == name)
            || self.certificates.iter().any(|(c, _)| &*c.name == name)
    }

    /// The caller a credential stands for, if any. A token is hashed and compared with every
    /// listed hash in constant time.
    pub fn identify(&self, credential: Credential<'_>) -> Option<Caller> {
        match credential {
            Credential::Token(token) => self.identify_token_hash(&token_digest(token)),
            Credential::Certificate(common_name) => self
                .certificates
                .iter()
                .find(|(_, name)| name == common_name)
                .map(|(caller, _)| caller.clone()),
        }
    }

    /// The caller whose token has this SHA-256 (a console session holds the hash, not the
    /// token), compared with every listed hash in constant time.
    pub fn identify_token_hash(&self, presented: &[u8; 32]) -> Option<Caller> {
        let mut found = None;
        for (caller, hash) in &self.tokens {
            if bool::from(hash.ct_eq(presented)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// How many callers the file lists.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.certificates.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The token of an `authorization` header value of the form `Bearer <token>` (trimmed, not
/// empty); `None` when the value is not of that form.
pub fn bearer_token(value: &http::HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The SHA-256 of a bearer token, as bytes.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The callers of the tokens file in force, following the file.
#[derive(Clone, Debug)]
pub struct Authenticator {
    path: PathBuf,
    current: Arc<RwLock<Arc<Callers>>>,
}

impl Authenticator {
    /// Reads the file; an error here (at start) stops the service.
    pub fn load(path: &Path) -> Result<Self, TokensFileError> {
        Ok(Self {
            path: path.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(read(path)?))),
        })
    }

    /// The callers in force.
    pub fn callers(&self) -> Arc<Callers> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the file whenever it changes (looked at every `every`) or on SIGHUP, until `stop`.
    pub async fn follow_file(self, every: Duration, stop: CancellationToken) {
        let paths = [self.path.clone()];
        crate::reload::on_change(&paths, every, stop, |trigger| match read(&self.path) {
            Ok(callers) => {
                tracing::info!(file = %self.path.display(), callers = callers.len(), trigger, "callers re-read");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(callers);
            }
            Err(e) => tracing::error!(error = %e, trigger, "cannot re-read the callers; the previous ones stay in force"),
        })
        .await;
    }
}

fn read(path: &Path) -> Result<Callers, TokensFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TokensFileError {
        file: file.clone(),
        line: 0,
        reason: format!("cannot be read ({e})"),
    })?;
    Callers::parse(&file, &text)
}

/// The SHA-256 of a token, as the file writes it.
pub fn token_hash(token: &str) -> String {
    hex::encode(token_digest(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers(text: &str) -> Result<Callers, TokensFileError> {
        Callers::parse("tokens", text)
    }

    #[test]
    fn tokens_and_certificates_name_their_callers() {
        let file = format!(
            "# who\ngateway write {}\n\n  oncall admin cert:oncall.ops  # people\nreader read {}\n",
            token_hash("s3cret"),
            token_hash("other")
        );
        let callers = callers(&file).unwrap();
        assert_eq!(callers.len(), 3);
        let gateway = callers.identify(Credential::Token("s3cret")).unwrap();
        assert_eq!((&*gateway.name, gateway.scope), ("gateway", Scope::Write));
        assert_eq!(
            callers.identify(Credential::Token("other")).unwrap().scope,
            Scope::Read
        );
        assert_eq!(callers.identify(Credential::Token("s3cre")), None);
        assert_eq!(
            callers
                .identify(Credential::Certificate("oncall.ops"))
                .unwrap()
                .scope,
            Scope::Admin
        );
        assert_eq!(callers.identify(Credential::Certificate("gateway")), None);
    }

    #[test]
    fn scopes_grow() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
    }

    #[test]
    fn a_bad_line_is_named() {
        for (text, line) in [
            ("a read\n", 1),
            ("# ok\na root abcd\n", 2),
            ("a read abcd\n", 1),
            ("a read cert:\n", 1),
            (&format!("a read {}\na write cert:x\n", token_hash("t")), 2),
        ] {
            let error = callers(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("tokens line {line}:"))
            );
        }
    }
}
