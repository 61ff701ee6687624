//! The identity provider's public keys, from its JWKS URL: fetched on first use, cached, and
//! fetched again when a token names an unknown key id (key rotation) — at most every
//! [`JWKS_MIN_REFRESH_INTERVAL`], so forged key ids cannot make us hammer the provider.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::RwLock;

use crate::error::ApiError;

/// Shortest time between two fetches.
const JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Cached keys older than this are fetched again before use.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);

/// The identity provider's keys, fetched on first use and again on an unknown key id.
pub(super) struct JwksCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<CachedKeys>,
}

struct CachedKeys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

impl JwksCache {
    pub(super) fn new(url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            url,
            http,
            keys: RwLock::new(CachedKeys {
                by_kid: HashMap::new(),
                fetched_at: None,
            }),
        }
    }

    pub(super) async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        {
            let keys = self.keys.read().await;
            let fresh = keys
                .fetched_at
                .is_some_and(|at| at.elapsed() < JWKS_MAX_AGE);
            if let (true, Some(key)) = (fresh, keys.by_kid.get(kid)) {
                return Ok(key.clone());
            }
        }
        let mut keys = self.keys.write().await;
        let may_refresh = keys
            .fetched_at
            .is_none_or(|at| at.elapsed() >= JWKS_MIN_REFRESH_INTERVAL);
        if may_refresh {
            match self.fetch().await {
                Ok(fetched) => {
                    keys.by_kid = fetched;
                    keys.fetched_at = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "cannot refresh the JWKS");
                    if keys.by_kid.is_empty() {
                        return Err(ApiError::unavailable(
                            "the identity provider's keys cannot be fetched",
                        ));
                    }
                }
            }
        }
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("token signed by an unknown key"))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, reqwest::Error> {
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
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::auth::{Authenticator, DevTokenClaims, Principal, unix_now};
    use crate::config::AuthConfig;

    /// A P-256 key made for this test only (`openssl ecparam -name prime256v1 -genkey`).
    const TEST_EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9BIf7YdLOIgwQIup
UOSNYGv8Wqqg0DoVdTboIYOFpzOhRANCAATR93mK//m+AH7oki/Zbibe7RYGPo10
QupCRacIPy+g2titizsKj1Jq44HzmCutGcsrKiQ6hxiche9dL7Sraf9B
-----END PRIVATE KEY-----
";
    const TEST_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"idp-key-1","use":"sig","alg":"ES256","x":"0fd5iv_5vgB-6JIv2W4m3u0WBj6NdELqQkWnCD8voNo","y":"2K2LOwqPUmrjgfOYK60ZyysqJDqHGJyF710vtKtp_0E"}]}"#;

    /// Serves `body` as JSON to every HTTP request; returns the URL and a request counter.
    async fn serve_jwks(
        body: &'static str,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (url, hits)
    }

    fn es256_token(kid: &str, aud: &str) -> String {
        let now = unix_now();
        let claims = DevTokenClaims {
            sub: "carol".into(),
            email: Some("carol@idp.example".into()),
            given_name: Some("Carol".into()),
            family_name: None,
            roles: vec![],
            iss: "tenantry".into(),
            aud: aud.into(),
            exp: now + 600,
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
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
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
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // HS256 tokens are not accepted when only a JWKS is configured.
        let hs = crate::auth::mint_user_token(
            "unused",
            &DevTokenClaims {
                sub: "mallory".into(),
                email: None,
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
}
