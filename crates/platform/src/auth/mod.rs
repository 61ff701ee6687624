//! Authentication: who is calling.
//!
//! Users present `authorization: Bearer <JWT>` signed either with the HS256 shared secret
//! (development, tests) or by the identity provider's keys published at a JWKS URL (RS256/ES256,
//! production). The JWKS is fetched again every `TENANTRY_JWKS_REFRESH_SECONDS` (jittered), so a
//! key the provider removed is refused by every replica within that interval (+10 %, + the
//! fetch); see `jwks.rs`. `iss`, `aud` and `exp` are required and checked. Services calling each
//! other present short-lived HS256 tokens signed with the cluster's internal secret and marked
//! with the key id [`SERVICE_KEY_ID`]; they never pass for users and users never pass for them.
//!
//! Verified tokens, users' and services' alike, are remembered by the SHA-256 of their text until
//! their `exp` (`TENANTRY_TOKEN_CACHE_SIZE` of them), so a caller's repeated calls cost one hash
//! rather than a signature check each; a key that leaves the JWKS empties that cache (see
//! `cache.rs`).

mod cache;
mod jwks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache::{TokenCache, Verified};
use jwks::JwksCache;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::ApiError;

/// Key id that marks a service-to-service token.
pub const SERVICE_KEY_ID: &str = "tenantry-service";
/// Audience and issuer of service-to-service tokens.
pub const SERVICE_AUDIENCE: &str = "tenantry-internal";
const SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew allowed on `exp` and `nbf`, in seconds (the README documents it).
const LEEWAY_SECONDS: u64 = 30;
/// Default of [`AuthConfig::jwks_refresh_seconds`]: how often the JWKS is fetched on schedule,
/// which bounds how long a key removed from it is still accepted.
pub const DEFAULT_JWKS_REFRESH_SECONDS: u64 = 60;

/// A person, known by the `sub` of their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIdentity {
    /// The token's `sub`.
    pub sub: String,
    /// The token's `email`, if any.
    pub email: Option<String>,
    /// Whether the token says the e-mail is verified (`email_verified`: true or "true"):
    /// what lets a person find invitations by their address alone (ListMyInvitations).
    pub email_verified: bool,
    /// The token's `given_name`, if any.
    pub given_name: Option<String>,
    /// The token's `family_name`, if any.
    pub family_name: Option<String>,
    /// Whether the token carries the configured operator role.
    pub operator: bool,
}

impl UserIdentity {
    /// The resource name `users/{sub}`.
    pub fn resource_name(&self) -> String {
        format!("users/{}", self.sub)
    }
}

/// Another Tenantry service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// The service's name, e.g. `invitation`.
    pub name: String,
}

impl ServiceIdentity {
    /// The resource name `services/{name}`.
    pub fn resource_name(&self) -> String {
        format!("services/{}", self.name)
    }
}

/// The authenticated caller of an RPC. The server's edge layer puts it in the request's
/// extensions; handlers take it out with [`Principal::of`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A person.
    User(UserIdentity),
    /// Another service of the cluster.
    Service(ServiceIdentity),
}

impl Principal {
    /// The caller of `request`, as authenticated by the edge layer.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Principal, ApiError> {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("missing bearer token"))
    }

    /// The caller as a user; services are refused (PERMISSION_DENIED) where only people may act.
    pub fn user(&self) -> Result<&UserIdentity, ApiError> {
        match self {
            Principal::User(user) => Ok(user),
            Principal::Service(_) => Err(ApiError::forbidden(
                "USER_REQUIRED",
                "this method acts for a person; a service identity cannot call it",
            )),
        }
    }

    /// The caller as a service; people are refused (PERMISSION_DENIED) on internal methods.
    pub fn service(&self) -> Result<&ServiceIdentity, ApiError> {
        match self {
            Principal::Service(service) => Ok(service),
            Principal::User(_) => Err(ApiError::forbidden(
                "INTERNAL_ONLY",
                "this method is internal: only Tenantry services may call it",
            )),
        }
    }

    /// Whether the caller is a platform operator.
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::User(user) if user.operator)
    }

    /// `users/{sub}` or `services/{name}`, for audit fields.
    pub fn resource_name(&self) -> String {
        match self {
            Principal::User(user) => user.resource_name(),
            Principal::Service(service) => service.resource_name(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct UserClaims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

/// An `email_verified` claim: the boolean true, or the string "true" some providers send.
pub fn claims_verified(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(verified)) => *verified,
        Some(serde_json::Value::String(text)) => text == "true",
        _ => false,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ServiceClaims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
}

/// Claims of a development user token minted by [`mint_user_token`].
#[derive(Debug, Clone, Serialize)]
pub struct DevTokenClaims {
    /// Subject.
    pub sub: String,
    /// E-mail address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the e-mail is verified (development tokens vouch for the address they carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Given name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Roles; holds the operator role for operators.
    pub roles: Vec<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
}

/// Mints an HS256 user token (for `tenantry token`, tests and the walkthrough).
pub fn mint_user_token(secret: &str, claims: &DevTokenClaims) -> Result<String, ApiError> {
    let key =
        EncodingKey::from_secret(secret.as_bytes()).map_err(|error| ApiError::internal(&error))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .map_err(|error| ApiError::internal(&error))
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An identity provider's signing keys, from its JWKS URL, for tokens verified outside the gRPC
/// edge (the ID tokens of the invitation page's sign-in): fetched on first use, then every
/// [`DEFAULT_JWKS_REFRESH_SECONDS`] (jittered) and when a token names an unknown key id, with the
/// same limits as the edge's keys.
pub struct ProviderKeys(JwksCache);

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys").finish_non_exhaustive()
    }
}

impl ProviderKeys {
    /// The keys published at `jwks_url`.
    pub fn new(jwks_url: String) -> Self {
        // No token cache to empty on a revoked key: ID tokens are checked once each.
        Self(JwksCache::new(
            jwks_url,
            Arc::new(TokenCache::new(0)),
            Duration::from_secs(DEFAULT_JWKS_REFRESH_SECONDS),
        ))
    }

    /// The key with id `kid`: UNAUTHENTICATED for an unknown one, UNAVAILABLE when the keys
    /// cannot be fetched.
    pub async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        self.0.key(kid).await
    }
}

/// Verifies bearer tokens.
pub struct Authenticator {
    config: AuthConfig,
    user_secret: Option<DecodingKey>,
    /// The keys service tokens are accepted with: the current internal secret, then the previous
    /// one while it is being rotated.
    internal_secrets: Vec<DecodingKey>,
    jwks: Option<JwksCache>,
    tokens: Arc<TokenCache>,
    /// Clock skew allowed on `exp` ([`LEEWAY_SECONDS`]; tests lower it).
    leeway: u64,
    /// Full verifications done (tests count them to tell cache hits from misses).
    #[cfg(test)]
    verifications: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .field("jwks_url", &self.config.jwks_url)
            .field("token_cache_size", &self.config.token_cache_size)
            .field("jwks_refresh_seconds", &self.config.jwks_refresh_seconds)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `config`. Fails when neither an HS256 secret nor a JWKS URL is set.
    pub fn new(config: AuthConfig) -> Result<Self, AuthSetupError> {
        if config.jwt_secret.is_none() && config.jwks_url.is_none() {
            return Err(AuthSetupError::NoUserKeys);
        }
        let user_secret = config
            .jwt_secret
            .as_deref()
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
            .transpose()
            .map_err(AuthSetupError::Key)?;
        let internal_secrets = [&config.internal_secret, &config.internal_secret_previous]
            .into_iter()
            .flatten()
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AuthSetupError::Key)?;
        let tokens = Arc::new(TokenCache::new(config.token_cache_size));
        let jwks = config.jwks_url.clone().map(|url| {
            let interval = Duration::from_secs(config.jwks_refresh_seconds.max(1));
            JwksCache::new(url, tokens.clone(), interval)
        });
        Ok(Self {
            config,
            user_secret,
            internal_secrets,
            jwks,
            tokens,
            leeway: LEEWAY_SECONDS,
            #[cfg(test)]
            verifications: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The configuration this authenticator checks against.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Authenticates the `authorization` header of a request.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, ApiError> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("missing bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthenticated("the authorization header must be `Bearer <token>`")
            })?;
        self.verify(token).await
    }

    /// Verifies one token, or finds it among the tokens verified before.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        if !self.tokens.enabled() {
            return Ok(self.verify_uncached(token).await?.principal);
        }
        let hash = cache::hash(token);
        let now = unix_now();
        let jwks_fresh = || self.jwks.as_ref().is_some_and(JwksCache::is_fresh);
        if let Some(principal) = self.tokens.get(&hash, now, jwks_fresh) {
            return Ok(principal);
        }
        // Read before verifying: if the JWKS loses a key meanwhile, the result is not kept.
        let generation = self.tokens.generation();
        let verified = self.verify_uncached(token).await?;
        let principal = verified.principal.clone();
        self.tokens.insert(hash, verified, generation, unix_now());
        Ok(principal)
    }

    /// Checks one token's signature and claims.
    async fn verify_uncached(&self, token: &str) -> Result<Verified, ApiError> {
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthenticated("malformed bearer token"))?;
        if header.kid.as_deref() == Some(SERVICE_KEY_ID) {
            return self.verify_service(token);
        }
        let from_jwks = header.alg != Algorithm::HS256;
        let key = match header.alg {
            Algorithm::HS256 => self
                .user_secret
                .clone()
                .ok_or_else(|| ApiError::unauthenticated("HS256 user tokens are not accepted"))?,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::PS256 => {
                let jwks = self.jwks.as_ref().ok_or_else(|| {
                    ApiError::unauthenticated("asymmetric tokens need a configured JWKS URL")
                })?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| ApiError::unauthenticated("token has no key id"))?;
                jwks.key(kid).await?
            }
            _ => return Err(ApiError::unauthenticated("unsupported token algorithm")),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // A token not valid yet (`nbf` ahead of the clock by more than the leeway) is refused.
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<UserClaims>(token, &key, &validation)
            .map_err(|error| ApiError::unauthenticated(describe_jwt_error(&error)))?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 255 || claims.sub.contains('/') {
            return Err(ApiError::unauthenticated(
                "token `sub` must be 1-255 characters without `/`",
            ));
        }
        let operator = roles_in(&claims.other, &self.config.roles_claim)
            .iter()
            .any(|role| role == &self.config.operator_role);
        // `exp` is required and was checked; 0 (never cached) if it somehow cannot be read.
        let expires_at = claims.other.get("exp").and_then(seconds).unwrap_or(0);
        Ok(Verified {
            principal: Principal::User(UserIdentity {
                sub: claims.sub,
                email_verified: claims_verified(claims.email_verified.as_ref()),
                email: claims.email.filter(|email| !email.is_empty()),
                given_name: claims.given_name.filter(|name| !name.is_empty()),
                family_name: claims.family_name.filter(|name| !name.is_empty()),
                operator,
            }),
            expires_at,
            from_jwks,
        })
    }

    fn verify_service(&self, token: &str) -> Result<Verified, ApiError> {
        if self.internal_secrets.is_empty() {
            return Err(ApiError::unauthenticated(
                "service tokens are not accepted here",
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[SERVICE_AUDIENCE]);
        validation.set_audience(&[SERVICE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        // The current secret first; the previous one only for a signature the current one does
        // not match (a replica not yet rolled to the new secret, or already rolled past it).
        let mut outcome = Err(jsonwebtoken::errors::ErrorKind::InvalidSignature.into());
        for key in &self.internal_secrets {
            outcome = jsonwebtoken::decode::<ServiceClaims>(token, key, &validation);
            match &outcome {
                Err(error)
                    if matches!(
                        error.kind(),
                        jsonwebtoken::errors::ErrorKind::InvalidSignature
                    ) => {}
                _ => break,
            }
        }
        let data =
            outcome.map_err(|error| ApiError::unauthenticated(describe_jwt_error(&error)))?;
        let name = data
            .claims
            .sub
            .strip_prefix("services/")
            .ok_or_else(|| ApiError::unauthenticated("malformed service token subject"))?;
        Ok(Verified {
            principal: Principal::Service(ServiceIdentity {
                name: name.to_string(),
            }),
            expires_at: data.claims.exp,
            from_jwks: false,
        })
    }
}

/// A NumericDate claim as `jsonwebtoken` reads it: whole seconds, or a fraction rounded.
fn seconds(value: &serde_json::Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|value| value.is_finite() && *value >= 0.0 && *value < u64::MAX as f64)
            .map(|value| value.round() as u64)
    })
}

fn describe_jwt_error(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::ImmatureSignature => "token is not valid yet",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (sub, exp, iss, aud)",
        _ => "invalid bearer token",
    }
}

/// The roles at a dotted path of the claims: a list of strings, or one space-separated string.
fn roles_in(claims: &HashMap<String, serde_json::Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    let mut value = match claims.get(first) {
        Some(value) => value,
        None => return Vec::new(),
    };
    for part in parts {
        value = match value.get(part) {
            Some(inner) => inner,
            None => return Vec::new(),
        };
    }
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        serde_json::Value::String(text) => text.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Why an authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// Neither `TENANTRY_JWT_SECRET` nor `TENANTRY_JWKS_URL` is set.
    #[error("no way to verify user tokens: set TENANTRY_JWT_SECRET or TENANTRY_JWKS_URL")]
    NoUserKeys,
    /// A secret cannot be used as a key.
    #[error("unusable key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
}

/// Mints and caches this service's own token for calls to other services.
#[derive(Clone)]
pub struct ServiceTokenMinter {
    service: String,
    key: Arc<EncodingKey>,
    cached: Arc<Mutex<Option<(String, Instant)>>>,
}

impl std::fmt::Debug for ServiceTokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenMinter")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenMinter {
    /// A minter for `service` with the cluster's internal secret.
    pub fn new(service: &str, internal_secret: &str) -> Result<Self, AuthSetupError> {
        Ok(Self {
            service: service.to_string(),
            key: Arc::new(
                EncodingKey::from_secret(internal_secret.as_bytes())
                    .map_err(AuthSetupError::Key)?,
            ),
            cached: Arc::new(Mutex::new(None)),
        })
    }

    /// A valid token, re-minted when half its lifetime has passed.
    pub fn token(&self) -> Result<String, ApiError> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((token, minted)) = cached.as_ref()
            && minted.elapsed() < SERVICE_TOKEN_LIFETIME / 2
        {
            return Ok(token.clone());
        }
        let now = unix_now();
        let claims = ServiceClaims {
            sub: format!("services/{}", self.service),
            iss: SERVICE_AUDIENCE.to_string(),
            aud: SERVICE_AUDIENCE.to_string(),
            iat: now,
            exp: now + SERVICE_TOKEN_LIFETIME.as_secs(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(SERVICE_KEY_ID.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| ApiError::internal(&error))?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(roles: Vec<String>, exp_offset: i64, aud: &str) -> DevTokenClaims {
        let now = unix_now();
        DevTokenClaims {
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            given_name: None,
            family_name: None,
            roles,
            iss: "tenantry".into(),
            aud: aud.into(),
            exp: (now as i64 + exp_offset) as u64,
            iat: now,
        }
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(AuthConfig::with_secrets("user-secret", "internal-secret"))
            .expect("authenticator")
    }

    #[tokio::test]
    async fn accepts_valid_user_and_operator_tokens() {
        let auth = authenticator();
        let token = mint_user_token("user-secret", &claims(vec![], 600, "tenantry")).unwrap();
        let Principal::User(user) = auth.verify(&token).await.unwrap() else {
            panic!("expected a user");
        };
        assert_eq!(user.sub, "alice");
        assert!(!user.operator);
        let token = mint_user_token(
            "user-secret",
            &claims(vec!["tenantry-operator".into()], 600, "tenantry"),
        )
        .unwrap();
        assert!(auth.verify(&token).await.unwrap().is_operator());
    }

    #[tokio::test]
    async fn refuses_expired_forged_and_foreign_tokens() {
        let auth = authenticator();
        for token in [
            mint_user_token("user-secret", &claims(vec![], -600, "tenantry")).unwrap(),
            mint_user_token("other-secret", &claims(vec![], 600, "tenantry")).unwrap(),
            mint_user_token("user-secret", &claims(vec![], 600, "someone-else")).unwrap(),
            "not-a-jwt".to_string(),
        ] {
            let error = auth.verify(&token).await.unwrap_err();
            assert_eq!(error.code(), tonic::Code::Unauthenticated, "{token}");
        }
    }

    #[tokio::test]
    async fn service_tokens_are_told_apart_from_user_tokens() {
        let auth = authenticator();
        let token = ServiceTokenMinter::new("invitation", "internal-secret")
            .unwrap()
            .token()
            .unwrap();
        let principal = auth.verify(&token).await.unwrap();
        assert_eq!(
            principal,
            Principal::Service(ServiceIdentity {
                name: "invitation".into()
            })
        );
        // Signed with the user secret, a "service" token is refused.
        let forged = ServiceTokenMinter::new("invitation", "user-secret")
            .unwrap()
            .token()
            .unwrap();
        assert!(auth.verify(&forged).await.is_err());
    }

    /// A user token signed with `secret` whose `nbf` is `nbf_offset` seconds from now.
    fn token_valid_from(secret: &str, nbf_offset: i64) -> String {
        let now = unix_now() as i64;
        let claims = serde_json::json!({
            "sub": "alice", "iss": "tenantry", "aud": "tenantry",
            "exp": now + 7200, "iat": now, "nbf": now + nbf_offset,
        });
        let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[tokio::test]
    async fn a_token_not_valid_yet_is_refused_beyond_the_leeway() {
        let auth = authenticator();
        let refused = auth
            .verify(&token_valid_from("user-secret", 3600))
            .await
            .expect_err("nbf an hour ahead");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(refused.message().contains("not valid yet"), "{refused:?}");
        // Within the leeway (a clock a few seconds behind the issuer's): accepted.
        auth.verify(&token_valid_from("user-secret", LEEWAY_SECONDS as i64 - 10))
            .await
            .expect("nbf within the leeway");
        auth.verify(&token_valid_from("user-secret", -60))
            .await
            .expect("nbf passed");
    }

    #[tokio::test]
    async fn service_tokens_of_the_previous_internal_secret_are_accepted_during_a_rotation() {
        let rotating = Authenticator::new(AuthConfig {
            internal_secret_previous: Some("old-internal".into()),
            ..AuthConfig::with_secrets("user-secret", "new-internal")
        })
        .expect("authenticator");
        let done = Authenticator::new(AuthConfig::with_secrets("user-secret", "new-internal"))
            .expect("authenticator");
        let token = |secret: &str| {
            ServiceTokenMinter::new("invitation", secret)
                .unwrap()
                .token()
                .unwrap()
        };
        for secret in ["new-internal", "old-internal"] {
            assert_eq!(
                rotating
                    .verify(&token(secret))
                    .await
                    .unwrap()
                    .resource_name(),
                "services/invitation",
                "{secret}"
            );
        }
        assert!(rotating.verify(&token("other")).await.is_err());
        // Once the previous secret is dropped, its tokens are refused.
        assert!(done.verify(&token("old-internal")).await.is_err());
        assert!(done.verify(&token("new-internal")).await.is_ok());
    }

    #[test]
    fn roles_reach_into_nested_claims() {
        let claims: HashMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"realm_access":{"roles":["a","tenantry-operator"]},"scope":"x y"}"#,
        )
        .unwrap();
        assert_eq!(roles_in(&claims, "realm_access.roles").len(), 2);
        assert_eq!(roles_in(&claims, "scope"), vec!["x", "y"]);
        assert!(roles_in(&claims, "missing").is_empty());
    }

    fn verifications(auth: &Authenticator) -> usize {
        auth.verifications.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn authenticator_caching(size: usize) -> Authenticator {
        Authenticator::new(AuthConfig {
            token_cache_size: size,
            ..AuthConfig::with_secrets("user-secret", "internal-secret")
        })
        .expect("authenticator")
    }

    #[tokio::test]
    async fn user_and_service_tokens_are_verified_once() {
        let auth = authenticator();
        let user = mint_user_token(
            "user-secret",
            &claims(vec!["tenantry-operator".into()], 600, "tenantry"),
        )
        .unwrap();
        let service = ServiceTokenMinter::new("invitation", "internal-secret")
            .unwrap()
            .token()
            .unwrap();
        for _ in 0..3 {
            assert!(auth.verify(&user).await.unwrap().is_operator());
            assert_eq!(
                auth.verify(&service).await.unwrap().resource_name(),
                "services/invitation"
            );
        }
        assert_eq!(verifications(&auth), 2);
        // Refusals are not cached: a bad token is checked (and refused) every time.
        let forged = mint_user_token("other-secret", &claims(vec![], 600, "tenantry")).unwrap();
        for _ in 0..2 {
            assert!(auth.verify(&forged).await.is_err());
        }
        assert_eq!(verifications(&auth), 4);
        // A different token of the same user is verified on its own.
        let other = mint_user_token("user-secret", &claims(vec![], 601, "tenantry")).unwrap();
        assert!(!auth.verify(&other).await.unwrap().is_operator());
        assert_eq!(verifications(&auth), 5);
    }

    #[tokio::test]
    async fn tokens_past_their_exp_are_never_served_from_the_cache() {
        let auth = authenticator();
        // Expired 5 s ago, within the 30 s leeway: accepted, but verified every time.
        let token = mint_user_token("user-secret", &claims(vec![], -5, "tenantry")).unwrap();
        for _ in 0..2 {
            auth.verify(&token).await.unwrap();
        }
        assert_eq!(verifications(&auth), 2);
        assert_eq!(auth.tokens.len(), 0);
    }

    #[tokio::test]
    async fn a_cached_token_is_refused_once_it_expires() {
        let mut auth = authenticator();
        auth.leeway = 0;
        let token = mint_user_token("user-secret", &claims(vec![], 1, "tenantry")).unwrap();
        let expires = unix_now() + 1;
        auth.verify(&token).await.unwrap();
        auth.verify(&token).await.unwrap();
        assert_eq!(verifications(&auth), 1);
        while unix_now() <= expires {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let error = auth.verify(&token).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(verifications(&auth), 2);
    }

    #[tokio::test]
    async fn the_cache_size_bounds_the_cache_and_zero_turns_it_off() {
        let auth = authenticator_caching(8);
        for index in 0..50 {
            let token =
                mint_user_token("user-secret", &claims(vec![], 600 + index, "tenantry")).unwrap();
            auth.verify(&token).await.unwrap();
            assert!(auth.tokens.len() <= 8);
        }
        let auth = authenticator_caching(0);
        let token = mint_user_token("user-secret", &claims(vec![], 600, "tenantry")).unwrap();
        for _ in 0..3 {
            auth.verify(&token).await.unwrap();
        }
        assert_eq!(verifications(&auth), 3);
        assert_eq!(auth.tokens.len(), 0);
    }

    #[test]
    fn the_cache_size_is_a_setting() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            auth: AuthConfig,
        }
        let cli = Cli::try_parse_from(["tenantry"]).unwrap();
        assert_eq!(cli.auth.token_cache_size, 10_000);
        let cli = Cli::try_parse_from(["tenantry", "--token-cache-size", "0"]).unwrap();
        assert_eq!(cli.auth.token_cache_size, 0);
    }
}
