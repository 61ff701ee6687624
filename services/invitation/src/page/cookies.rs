//! The page's state lives in sealed cookies, not on the server, so any replica answers any step:
//! each value is JSON encrypted and authenticated with AES-256-GCM under a key every replica
//! derives from the cluster's internal secret, bound to the cookie's name (one cookie cannot be
//! replayed as another) and carrying its own expiry. All are HttpOnly, SameSite=Lax (the
//! identity provider's redirect back is a top-level GET from another site, which Strict would
//! strip) and Secure when the public URL is https.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The invitation link's secret and the CSRF token of the page's forms.
pub const LINK: &str = "tenantry_invitation";
/// The signed-in person.
pub const SESSION: &str = "tenantry_session";
/// An OpenID Connect sign-in under way: state, nonce and PKCE verifier.
pub const SIGN_IN: &str = "tenantry_sign_in";

/// The path every cookie is scoped to.
pub const PATH: &str = "/invitations";

/// Seals and opens the page's cookies.
#[derive(Clone)]
pub struct CookieSealer {
    /// The key that seals, then any key that still opens (the previous internal secret's,
    /// during a rotation), so a sign-in under way survives replicas rolling to a new secret.
    keys: std::sync::Arc<[LessSafeKey]>,
    secure: bool,
}

impl std::fmt::Debug for CookieSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSealer")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// A sealed value with its expiry (seconds since the epoch).
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<T> {
    exp: u64,
    value: T,
}

impl CookieSealer {
    /// A sealer whose key is derived from `secret` (the cluster's internal secret); `secure`
    /// adds the Secure attribute (an https public URL).
    pub fn new(secret: &[u8], secure: bool) -> Self {
        Self::rotating(secret, None, secure)
    }

    /// [`CookieSealer::new`] that also opens cookies sealed under `previous` (the internal
    /// secret being rotated).
    pub fn rotating(secret: &[u8], previous: Option<&[u8]>, secure: bool) -> Self {
        let derive = |secret: &[u8]| {
            let mut hasher = Sha256::new();
            hasher.update(b"tenantry invitation page cookies\0");
            hasher.update(secret);
            let key = UnboundKey::new(&AES_256_GCM, &hasher.finalize())
                .expect("a SHA-256 digest is an AES-256 key");
            LessSafeKey::new(key)
        };
        Self {
            keys: std::iter::once(secret)
                .chain(previous)
                .map(derive)
                .collect(),
            secure,
        }
    }

    /// A `Set-Cookie` value holding `value` under `name` for `lifetime_seconds`.
    pub fn seal<T: Serialize>(&self, name: &str, value: &T, lifetime_seconds: u64) -> String {
        let envelope = Envelope {
            exp: tenantry_platform::auth::unix_now() + lifetime_seconds,
            value,
        };
        let mut sealed = serde_json::to_vec(&envelope).expect("cookie values serialize");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any cookie-sized value");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        self.attributes(name, &URL_SAFE_NO_PAD.encode(bytes), lifetime_seconds)
    }

    /// A `Set-Cookie` value that deletes `name`.
    pub fn clear(&self, name: &str) -> String {
        self.attributes(name, "", 0)
    }

    fn attributes(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }

    /// The value sealed under `name` in the request's `Cookie` headers, if it is there, opens
    /// under this key and has not expired. Anything else (tampered, foreign, stale) is `None`.
    pub fn open<T: DeserializeOwned>(&self, headers: &http::HeaderMap, name: &str) -> Option<T> {
        let raw = cookie_value(headers, name)?;
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut opened = sealed.to_vec();
            let length = key
                .open_in_place(nonce, Aad::from(name.as_bytes()), &mut opened)
                .ok()?
                .len();
            opened.truncate(length);
            Some(opened)
        })?;
        let envelope: Envelope<T> = serde_json::from_slice(&plain).ok()?;
        (envelope.exp > tenantry_platform::auth::unix_now()).then_some(envelope.value)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// 32 random bytes, base64url: CSRF tokens, OpenID state and nonce, PKCE verifiers.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(set_cookie: &str) -> http::HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("other=1; {pair}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn cookies_of_the_previous_secret_open_during_a_rotation_and_new_ones_use_the_current() {
        let old = CookieSealer::new(b"old secret", false);
        let rotating = CookieSealer::rotating(b"new secret", Some(b"old secret"), false);
        let rolled_back = CookieSealer::rotating(b"old secret", Some(b"new secret"), false);
        let done = CookieSealer::new(b"new secret", false);
        let sealed_before = request_with(&old.seal(LINK, &"s".to_string(), 60));
        assert_eq!(
            rotating.open::<String>(&sealed_before, LINK).as_deref(),
            Some("s")
        );
        assert_eq!(done.open::<String>(&sealed_before, LINK), None);
        let sealed_during = request_with(&rotating.seal(LINK, &"t".to_string(), 60));
        assert_eq!(
            done.open::<String>(&sealed_during, LINK).as_deref(),
            Some("t")
        );
        assert_eq!(
            rolled_back.open::<String>(&sealed_during, LINK).as_deref(),
            Some("t")
        );
        assert_eq!(old.open::<String>(&sealed_during, LINK), None);
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_name_and_key() {
        let sealer = CookieSealer::new(b"cluster secret", false);
        let set = sealer.seal(LINK, &"the secret".to_string(), 60);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"));
        assert!(!set.contains("Secure"));
        assert!(!set.contains("the secret"), "the value is encrypted");
        let headers = request_with(&set);
        assert_eq!(
            sealer.open::<String>(&headers, LINK).as_deref(),
            Some("the secret")
        );
        // Another replica of the same cluster opens it; another cluster does not.
        assert!(
            CookieSealer::new(b"cluster secret", true)
                .open::<String>(&headers, LINK)
                .is_some()
        );
        assert!(
            CookieSealer::new(b"another secret", false)
                .open::<String>(&headers, LINK)
                .is_none()
        );
        // Moved under another name, it is refused.
        let moved = set.replacen(LINK, SESSION, 1);
        assert!(
            sealer
                .open::<String>(&request_with(&moved), SESSION)
                .is_none()
        );
        // A flipped character is refused.
        let value = set.split(';').next().unwrap();
        let mut tampered = value.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            sealer
                .open::<String>(&request_with(&tampered), LINK)
                .is_none()
        );
    }

    #[test]
    fn an_expired_value_is_refused_and_clearing_deletes() {
        let sealer = CookieSealer::new(b"k", true);
        let set = sealer.seal(SESSION, &1u8, 0);
        assert!(set.contains("; Secure"));
        assert!(sealer.open::<u8>(&request_with(&set), SESSION).is_none());
        assert_eq!(
            sealer.clear(SESSION),
            "tenantry_session=; Path=/invitations; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
