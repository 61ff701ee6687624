//! The identity provider's public keys, from its JWKS URL: fetched on first use, cached, and
//! fetched again when a token names an unknown key id (key rotation) or the keys are older than
//! [`JWKS_MAX_AGE`] — at most every [`JWKS_MIN_REFRESH_INTERVAL`], so forged key ids cannot make
//! us hammer the provider. When a fetch shows that a key id we had is gone or its key changed
//! (the provider revoked it), the cache of verified tokens is emptied, so tokens signed with it
//! are verified again, and refused, on their next use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::RwLock;

use super::cache::TokenCache;
use crate::error::ApiError;

/// Shortest time between two fetches.
const JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Cached keys older than this are fetched again before use.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);

/// The identity provider's keys, fetched on first use and again on an unknown key id.
pub(super) struct JwksCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (Jwk, DecodingKey)>>,
    /// When the keys were last fetched: milliseconds since `started`, plus one; 0 before the first
    /// fetch. Written under the `keys` write lock, read without it by cached-token look-ups.
    fetched_at: AtomicU64,
    started: Instant,
    min_refresh_interval: Duration,
    max_age: Duration,
    /// Verified tokens, emptied when a key is revoked.
    tokens: Arc<TokenCache>,
}

impl JwksCache {
    pub(super) fn new(url: String, tokens: Arc<TokenCache>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            url,
            http,
            keys: RwLock::new(HashMap::new()),
            fetched_at: AtomicU64::new(0),
            started: Instant::now(),
            min_refresh_interval: JWKS_MIN_REFRESH_INTERVAL,
            max_age: JWKS_MAX_AGE,
            tokens,
        }
    }

    /// How long ago the keys were fetched; `None` before the first fetch.
    fn age(&self) -> Option<Duration> {
        match self.fetched_at.load(Ordering::SeqCst) {
            0 => None,
            at => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    /// Whether the keys were fetched within the maximum age: tokens verified with them may be
    /// served from the token cache. Lock-free.
    pub(super) fn is_fresh(&self) -> bool {
        self.age().is_some_and(|age| age < self.max_age)
    }

    pub(super) async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        {
            let keys = self.keys.read().await;
            if let (true, Some((_, key))) = (self.is_fresh(), keys.get(kid)) {
                return Ok(key.clone());
            }
        }
        let mut keys = self.keys.write().await;
        let may_refresh = self
            .age()
            .is_none_or(|age| age >= self.min_refresh_interval);
        if may_refresh {
            match self.fetch().await {
                Ok(fetched) => {
                    let revoked = keys
                        .iter()
                        .any(|(kid, (jwk, _))| fetched.get(kid).is_none_or(|(new, _)| new != jwk));
                    *keys = fetched;
                    let millis =
                        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
                    self.fetched_at.store(millis + 1, Ordering::SeqCst);
                    if revoked {
                        self.tokens.clear();
                        tracing::debug!(
                            url = %self.url,
                            "a signing key left the JWKS or changed: cached tokens are verified again"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "cannot refresh the JWKS");
                    if keys.is_empty() {
                        return Err(ApiError::unavailable(
                            "the identity provider's keys cannot be fetched",
                        ));
                    }
                }
            }
        }
        keys.get(kid)
            .map(|(_, key)| key.clone())
            .ok_or_else(|| ApiError::unauthenticated("token signed by an unknown key"))
    }

    async fn fetch(&self) -> Result<HashMap<String, (Jwk, DecodingKey)>, reqwest::Error> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(set
            .keys
            .into_iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((kid, (jwk, key)))
            })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::auth::{Authenticator, DevTokenClaims, Principal, unix_now};
    use crate::config::AuthConfig;

    /// A P-256 key made for this test only (`openssl ecparam -name prime256v1 -genkey`).
    pub(crate) const TEST_EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9BIf7YdLOIgwQIup
UOSNYGv8Wqqg0DoVdTboIYOFpzOhRANCAATR93mK//m+AH7oki/Zbibe7RYGPo10
QupCRacIPy+g2titizsKj1Jq44HzmCutGcsrKiQ6hxiche9dL7Sraf9B
-----END PRIVATE KEY-----
";
    pub(crate) const TEST_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"idp-key-1","use":"sig","alg":"ES256","x":"0fd5iv_5vgB-6JIv2W4m3u0WBj6NdELqQkWnCD8voNo","y":"2K2LOwqPUmrjgfOYK60ZyysqJDqHGJyF710vtKtp_0E"}]}"#;

    /// Serves `body` as JSON to every HTTP request; returns the URL and a request counter.
    pub(crate) async fn serve_jwks(body: &'static str) -> (String, Arc<AtomicUsize>) {
        let server = JwksServer::start(body).await;
        (server.url, server.hits)
    }

    /// A JWKS endpoint whose document can be changed, or taken away (503), while it runs.
    struct JwksServer {
        url: String,
        hits: Arc<AtomicUsize>,
        body: Arc<Mutex<Option<String>>>,
    }

    impl JwksServer {
        async fn start(body: &str) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let served = Arc::new(Mutex::new(Some(body.to_string())));
            let (counter, document) = (hits.clone(), served.clone());
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut buffer = [0u8; 4096];
                    let _ = socket.read(&mut buffer).await;
                    let body = document.lock().unwrap().clone();
                    let response = match body {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                }
            });
            Self {
                url,
                hits,
                body: served,
            }
        }

        /// Serves `body` from now on; `None` answers 503.
        fn serve(&self, body: Option<&str>) {
            *self.body.lock().unwrap() = body.map(str::to_string);
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// An authenticator that trusts only the JWKS at `url`.
    fn jwks_authenticator(url: &str) -> Authenticator {
        Authenticator::new(AuthConfig {
            jwt_secret: None,
            jwks_url: Some(url.to_string()),
            ..AuthConfig::with_secrets("unused", "internal")
        })
        .unwrap()
    }

    fn verifications(auth: &Authenticator) -> usize {
        auth.verifications.load(Ordering::SeqCst)
    }

    fn es256_token(kid: &str, aud: &str) -> String {
        es256_token_expiring(kid, aud, unix_now() + 600)
    }

    fn es256_token_expiring(kid: &str, aud: &str, exp: u64) -> String {
        let now = unix_now();
        let claims = DevTokenClaims {
            sub: "carol".into(),
            email: Some("carol@idp.example".into()),
            email_verified: Some(true),
            given_name: Some("Carol".into()),
            family_name: None,
            roles: vec![],
            iss: "tenantry".into(),
            aud: aud.into(),
            exp,
            iat: now,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ec_pem(TEST_EC_KEY.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    #[tokio::test]
    async fn verifies_provider_tokens_through_the_jwks_url() {
        let (url, hits) = serve_jwks(TEST_JWKS).await;
        let config = AuthConfig {
            jwt_secret: None,
            jwks_url: Some(url),
            ..AuthConfig::with_secrets("unused", "internal")
        };
        let auth = Authenticator::new(config).unwrap();
        let Principal::User(user) = auth
            .verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap()
        else {
            panic!("expected a user");
        };
        assert_eq!(user.sub, "carol");
        assert_eq!(user.given_name.as_deref(), Some("Carol"));
        // Cached: a second token costs no fetch.
        auth.verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Wrong audience and unknown key ids are refused; the unknown kid does not refetch
        // within the minimum refresh interval.
        let error = auth
            .verify(&es256_token("idp-key-1", "other"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        let error = auth
            .verify(&es256_token("rotated-away", "tenantry"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // HS256 tokens are not accepted when only a JWKS is configured.
        let hs = crate::auth::mint_user_token(
            "unused",
            &DevTokenClaims {
                sub: "mallory".into(),
                email: None,
                email_verified: None,
                given_name: None,
                family_name: None,
                roles: vec![],
                iss: "tenantry".into(),
                aud: "tenantry".into(),
                exp: unix_now() + 600,
                iat: unix_now(),
            },
        )
        .unwrap();
        assert!(auth.verify(&hs).await.is_err());
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_unavailable_not_unauthenticated() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        drop(listener);
        let config = AuthConfig {
            jwt_secret: None,
            jwks_url: Some(url),
            ..AuthConfig::with_secrets("unused", "internal")
        };
        let auth = Authenticator::new(config).unwrap();
        let error = auth
            .verify(&es256_token("idp-key-1", "tenantry"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.leeway = 0;
        let expires = unix_now() + 2;
        let token = es256_token_expiring("idp-key-1", "tenantry", expires);
        let first = auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 1);
        // The provider goes away: the token verified once is still accepted, without a check.
        server.serve(None);
        for _ in 0..3 {
            assert_eq!(auth.verify(&token).await.unwrap(), first);
        }
        assert_eq!(verifications(&auth), 1);
        assert_eq!(server.hits(), 1);
        // Once it expires, it is verified again, and refused.
        while unix_now() <= expires {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert!(error.to_string().contains("expired"), "{error}");
        assert_eq!(verifications(&auth), 2);
    }

    #[tokio::test]
    async fn a_key_gone_from_the_jwks_empties_the_cache_on_an_unknown_key_id() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.jwks.as_mut().unwrap().min_refresh_interval = Duration::ZERO;
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        auth.verify(&token).await.unwrap();
        assert_eq!((verifications(&auth), server.hits()), (1, 1));
        assert_eq!(auth.tokens.len(), 1);
        // The provider revokes the key. Until the JWKS is fetched again the token stays
        // accepted (as it did before there was a token cache: the key was cached).
        server.serve(Some(r#"{"keys":[]}"#));
        auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 1);
        // A token with a key id we do not know makes us fetch the JWKS: idp-key-1 is gone.
        let error = auth
            .verify(&es256_token("idp-key-2", "tenantry"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(server.hits(), 2);
        assert_eq!(auth.tokens.len(), 0);
        // The token is verified again and refused.
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(verifications(&auth), 3);
    }

    #[tokio::test]
    async fn cached_tokens_are_checked_again_once_the_jwks_is_stale() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        let jwks = auth.jwks.as_mut().unwrap();
        jwks.min_refresh_interval = Duration::ZERO;
        jwks.max_age = Duration::from_millis(300);
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        auth.verify(&token).await.unwrap();
        assert_eq!((verifications(&auth), server.hits()), (1, 1));
        // Stale keys: the cached token is verified again, which fetches the JWKS; unchanged keys
        // keep the cache and the token.
        tokio::time::sleep(Duration::from_millis(400)).await;
        auth.verify(&token).await.unwrap();
        assert_eq!((verifications(&auth), server.hits()), (2, 2));
        auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 2);
        // Revoked while cached: refused once the keys are stale, with no other token's help.
        server.serve(Some(r#"{"keys":[]}"#));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.tokens.len(), 0);
    }

    #[tokio::test]
    async fn a_changed_key_under_the_same_id_empties_the_cache() {
        let server = JwksServer::start(TEST_JWKS).await;
        let mut auth = jwks_authenticator(&server.url);
        auth.jwks.as_mut().unwrap().min_refresh_interval = Duration::ZERO;
        let token = es256_token("idp-key-1", "tenantry");
        auth.verify(&token).await.unwrap();
        // Same key id, another key (the test key's `x` and `y` swapped: not our key).
        server.serve(Some(
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"idp-key-1","use":"sig","alg":"ES256","x":"2K2LOwqPUmrjgfOYK60ZyysqJDqHGJyF710vtKtp_0E","y":"0fd5iv_5vgB-6JIv2W4m3u0WBj6NdELqQkWnCD8voNo"}]}"#,
        ));
        let _ = auth.verify(&es256_token("idp-key-2", "tenantry")).await;
        assert_eq!(server.hits(), 2);
        assert_eq!(auth.tokens.len(), 0);
        assert!(auth.verify(&token).await.is_err());
    }
}
