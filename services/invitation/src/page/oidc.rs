//! Sign-in with OpenID Connect for the invitation page: the authorization code flow with PKCE
//! (S256), the provider found by discovery from its issuer URL, and the ID token checked
//! against the provider's published keys — signature, issuer, audience, expiry and the nonce of
//! this sign-in. Only the ID token is read: an e-mail counts only when `email_verified` is true.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tenantry_platform::auth::ProviderKeys;

use super::cookies::random_token;

/// How long the provider's endpoints get to answer.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Clock skew allowed on the ID token's times, in seconds.
const LEEWAY_SECONDS: u64 = 60;

/// The relying party's registration at the provider.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer URL; discovery reads `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id registered for the page.
    pub client_id: String,
    /// The client secret (HTTP Basic at the token endpoint); `None` for a public client, which
    /// PKCE alone protects.
    pub client_secret: Option<String>,
    /// The scopes asked for; `openid` is added when missing.
    pub scopes: String,
    /// `{public_url}/invitations/callback`, registered at the provider.
    pub redirect_uri: String,
}

/// Why a sign-in did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused to exchange the code (used, expired, or not ours).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The ID token failed a check.
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
}

/// What the page keeps (sealed in a cookie) between sending the browser to the provider and
/// its return.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// Returned by the provider unchanged: ties the answer to this browser.
    pub state: String,
    /// Must come back inside the ID token: ties the token to this sign-in.
    pub nonce: String,
    /// The PKCE verifier whose S256 challenge went to the provider.
    pub verifier: String,
}

/// The person the provider vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// The ID token's `sub`.
    pub sub: String,
    /// The e-mail, only when the provider says it is verified.
    pub email: Option<String>,
    /// Given name, if any.
    pub given_name: Option<String>,
    /// Family name, if any.
    pub family_name: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Provider {
    issuer: String,
    authorization_endpoint: url::Url,
    token_endpoint: String,
    keys: ProviderKeys,
}

/// The page's OpenID Connect client; discovery happens on first use and is kept once it worked.
pub struct OpenIdClient {
    settings: OidcSettings,
    http: reqwest::Client,
    provider: tokio::sync::OnceCell<Provider>,
}

impl std::fmt::Debug for OpenIdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenIdClient")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
}

#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    /// One audience or a list (jsonwebtoken checked that ours is among them).
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
}

impl OpenIdClient {
    /// A client for `settings`; nothing is fetched yet.
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            provider: tokio::sync::OnceCell::new(),
        }
    }

    async fn provider(&self) -> Result<&Provider, SignInError> {
        self.provider.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Provider, SignInError> {
        let configured = self.settings.issuer.trim_end_matches('/');
        let url = format!("{configured}/.well-known/openid-configuration");
        let unavailable = |error: reqwest::Error| SignInError::Unavailable(error.to_string());
        let discovery: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(unavailable)?
            .error_for_status()
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
        if discovery.issuer.trim_end_matches('/') != configured {
            return Err(SignInError::Unavailable(format!(
                "the discovery document names the issuer {:?}, not {configured:?}",
                discovery.issuer
            )));
        }
        let authorization_endpoint =
            url::Url::parse(&discovery.authorization_endpoint).map_err(|error| {
                SignInError::Unavailable(format!("authorization_endpoint: {error}"))
            })?;
        Ok(Provider {
            issuer: discovery.issuer,
            authorization_endpoint,
            token_endpoint: discovery.token_endpoint,
            keys: ProviderKeys::new(discovery.jwks_uri),
        })
    }

    /// Starts a sign-in: what to keep, and where to send the browser; `prompt_login` asks the
    /// provider for the credentials even if the browser is signed in there (another account).
    pub async fn begin(&self, prompt_login: bool) -> Result<(PendingSignIn, String), SignInError> {
        let provider = self.provider().await?;
        let pending = PendingSignIn {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let scopes = if self
            .settings
            .scopes
            .split_whitespace()
            .any(|scope| scope == "openid")
        {
            self.settings.scopes.clone()
        } else {
            format!("openid {}", self.settings.scopes)
        };
        let mut url = provider.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("scope", &scopes)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if prompt_login {
            url.query_pairs_mut().append_pair("prompt", "login");
        }
        Ok((pending, url.into()))
    }

    /// Completes a sign-in: exchanges `code` (with the PKCE verifier) for an ID token and
    /// checks it. The caller has already matched the returned `state` with `pending.state`.
    pub async fn finish(
        &self,
        pending: &PendingSignIn,
        code: &str,
    ) -> Result<SignedIn, SignInError> {
        let provider = self.provider().await?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("code_verifier", &pending.verifier)
            .append_pair("client_id", &self.settings.client_id)
            .finish();
        let mut request = self
            .http
            .post(&provider.token_endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some(secret) = &self.settings.client_secret {
            request = request.basic_auth(&self.settings.client_id, Some(secret));
        }
        let response = request
            .send()
            .await
            .map_err(|error| SignInError::Unavailable(error.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| SignInError::Unavailable(error.to_string()))?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenError>(&bytes)
                .map(|error| error.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(if status.is_server_error() {
                SignInError::Unavailable(error)
            } else {
                SignInError::Refused(error)
            });
        }
        let token = serde_json::from_slice::<TokenResponse>(&bytes)
            .ok()
            .and_then(|response| response.id_token)
            .ok_or_else(|| SignInError::Refused("the answer holds no id_token".into()))?;
        self.verify(provider, &token, &pending.nonce).await
    }

    async fn verify(
        &self,
        provider: &Provider,
        token: &str,
        nonce: &str,
    ) -> Result<SignedIn, SignInError> {
        let invalid = |what: &str| SignInError::InvalidToken(what.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        // Only the provider's asymmetric keys: never `none`, never a shared secret.
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(invalid("unsupported signing algorithm"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = provider.keys.key(&kid).await.map_err(|error| {
            if error.code() == tonic::Code::Unavailable {
                SignInError::Unavailable(error.message().to_string())
            } else {
                invalid("signed by an unknown key")
            }
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|error| SignInError::InvalidToken(error.to_string()))?
            .claims;
        let nonce_matches = claims
            .nonce
            .as_deref()
            .is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())));
        if !nonce_matches {
            return Err(invalid("the nonce is not this sign-in's"));
        }
        // OpenID Connect Core §3.1.3.7: with several audiences, `azp` must be this client.
        if claims
            .aud
            .as_array()
            .is_some_and(|audiences| audiences.len() > 1)
            && claims.azp.as_deref() != Some(self.settings.client_id.as_str())
        {
            return Err(invalid("issued to another party"));
        }
        let verified = matches!(&claims.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&claims.email_verified, Some(serde_json::Value::String(text)) if text == "true");
        let present = |value: Option<String>| {
            value
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        Ok(SignedIn {
            sub: claims.sub,
            email: present(claims.email).filter(|_| verified),
            given_name: present(claims.given_name),
            family_name: present(claims.family_name),
        })
    }
}
