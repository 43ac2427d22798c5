//! Who is looking, and proof that a form was posted from the console's own pages.
//!
//! - Every browser gets a random visitor cookie; a form carries the HMAC of it under this
//!   process's secret (the synchronizer token), and a POST is refused unless the two match
//!   (constant time). Another site can make a browser post, but can read neither the cookie
//!   (`HttpOnly`, `SameSite=Strict`) nor the page that holds the token.
//! - With `TASK_AUTH_TOKENS_FILE`, a person signs in with a bearer token from that file; the
//!   session cookie holds the token's SHA-256 (what the file holds, never the token), an
//!   expiry and an HMAC over both. Each request looks the hash up in the file in force, so a
//!   caller removed from the file is out at once. A request with `authorization: Bearer`
//!   is identified by that instead (scripts, tests).
//!
//! The secret is made at start: a restart signs everyone out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::auth::{Authenticator, Caller, Credential, Scope, token_digest};

/// The visitor cookie's name.
pub const VISITOR_COOKIE: &str = "task_console_visitor";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "task_console_session";
/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The process's signing secret.
pub struct Keys {
    secret: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// A new random secret.
    pub fn random() -> Self {
        Self {
            secret: rand::random(),
        }
    }

    fn mac(&self, purpose: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// The form token of a visitor.
    pub fn csrf_token(&self, visitor: &str) -> String {
        hex::encode(self.mac("csrf", visitor.as_bytes()))
    }

    /// Whether `token` is the form token of `visitor`.
    pub fn csrf_ok(&self, visitor: &str, token: &str) -> bool {
        let mut presented = [0u8; 32];
        if visitor.is_empty() || hex::decode_to_slice(token, &mut presented).is_err() {
            return false;
        }
        bool::from(presented.ct_eq(&self.mac("csrf", visitor.as_bytes())))
    }

    /// A session cookie's value for the caller of `token`, valid until `now + lifetime`.
    pub fn session(&self, token: &str, now: SystemTime) -> String {
        let expires = unix(now + SESSION_LIFETIME);
        let body = format!("{expires}.{}", hex::encode(token_digest(token)));
        let mac = hex::encode(self.mac("session", body.as_bytes()));
        format!("{body}.{mac}")
    }

    /// The token hash a session cookie holds, if it is ours and not expired.
    fn session_hash(&self, cookie: &str, now: SystemTime) -> Option<[u8; 32]> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let mut presented = [0u8; 32];
        hex::decode_to_slice(mac, &mut presented).ok()?;
        if !bool::from(presented.ct_eq(&self.mac("session", body.as_bytes()))) {
            return None;
        }
        let (expires, hash) = body.split_once('.')?;
        if expires.parse::<u64>().ok()? <= unix(now) {
            return None;
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hash, &mut digest).ok()?;
        Some(digest)
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A new visitor id.
pub fn new_visitor() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// Authentication is off: anyone who reaches the listener may do everything.
    Open,
    /// A caller of the tokens file.
    Caller(Caller),
    /// Authentication is on and the request proves no caller.
    Nobody,
}

impl Viewer {
    /// Identifies a request by its bearer token, else its session cookie.
    pub fn identify(
        authenticator: Option<&Authenticator>,
        keys: &Keys,
        bearer: Option<&str>,
        session: Option<&str>,
        now: SystemTime,
    ) -> Self {
        let Some(authenticator) = authenticator else {
            return Self::Open;
        };
        let callers = authenticator.callers();
        let caller = match (bearer, session) {
            (Some(token), _) => callers.identify(Credential::Token(token)),
            (None, Some(cookie)) => keys
                .session_hash(cookie, now)
                .and_then(|hash| callers.identify_token_hash(&hash)),
            (None, None) => None,
        };
        caller.map_or(Self::Nobody, Self::Caller)
    }

    /// Whether the viewer may do what `scope` allows.
    pub fn may(&self, scope: Scope) -> bool {
        match self {
            Self::Open => true,
            Self::Caller(caller) => caller.scope >= scope,
            Self::Nobody => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_token_belongs_to_its_visitor_and_this_process() {
        let keys = Keys::random();
        let token = keys.csrf_token("visitor-a");
        assert!(keys.csrf_ok("visitor-a", &token));
        assert!(!keys.csrf_ok("visitor-b", &token));
        assert!(!keys.csrf_ok("", &keys.csrf_token("")));
        assert!(!keys.csrf_ok("visitor-a", "zz"));
        assert!(
            !Keys::random().csrf_ok("visitor-a", &token),
            "another secret"
        );
    }

    #[test]
    fn a_session_names_the_token_digest_until_it_expires_and_cannot_be_forged() {
        let keys = Keys::random();
        let now = SystemTime::now();
        let cookie = keys.session("s3cret", now);
        assert!(!cookie.contains("s3cret"));
        assert_eq!(
            keys.session_hash(&cookie, now),
            Some(token_digest("s3cret"))
        );
        assert_eq!(keys.session_hash(&cookie, now + SESSION_LIFETIME), None);
        // Another token's hash under the same MAC, or a longer expiry: refused.
        let (body, mac) = cookie.rsplit_once('.').unwrap();
        let (expires, _) = body.split_once('.').unwrap();
        let swapped = format!("{expires}.{}.{mac}", hex::encode(token_digest("other")));
        assert_eq!(keys.session_hash(&swapped, now), None);
        let later = format!("9999999999.{}", &cookie[expires.len() + 1..]);
        assert_eq!(keys.session_hash(&later, now), None);
        assert_eq!(Keys::random().session_hash(&cookie, now), None);
    }
}
