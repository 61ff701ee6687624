//! The invitation page, on its own HTTP listener: the link from the e-mail opens it, the person
//! signs in (OpenID Connect, or the development sign-in under `tenantry up` with the public
//! development secret), sees the invitation and accepts or declines it. Every answer goes
//! through the same handlers as the LookupInvitation, AcceptInvitation and DeclineInvitation
//! RPCs, so the rules, limits and events are those of the API.
//!
//! The link's secret leaves the URL at once: the first request stores it in a sealed cookie and
//! redirects to the bare page, so it never reaches a `Location`, a `Referer`, a log line or a
//! trace. Forms are plain POSTs carrying a CSRF token kept in that cookie; no JavaScript runs.

pub mod cookies;
mod flow;
pub mod oidc;
mod sign_in;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::routing::{get, post};

use crate::CookieSecrets;
use crate::api::InvitationApi;
use cookies::CookieSealer;
use oidc::{OidcSettings, OpenIdClient};

/// Largest form body the page reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Why the page cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PageSetupError {
    /// Neither sign-in is available.
    #[error(
        "the invitation page needs a sign-in: set TENANTRY_OIDC_ISSUER_URL and TENANTRY_OIDC_CLIENT_ID \
(the development sign-in exists only under `tenantry up` with the public development secret)"
    )]
    NoSignIn,
    /// Half an OpenID registration.
    #[error("TENANTRY_OIDC_ISSUER_URL and TENANTRY_OIDC_CLIENT_ID must be set together")]
    PartialOpenId,
    /// A URL setting is not a URL.
    #[error("{setting} is not an absolute http(s) URL: {value:?}")]
    Url {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: String,
    },
    /// The public URL has a path: the links and the cookies' path would not meet the page.
    #[error(
        "TENANTRY_PUBLIC_URL must be an origin without a path when the invitation page is served \
(its links are {{public_url}}/invitations/…): {0:?}"
    )]
    PublicPath(String),
    /// The page would sign people in at another provider than the API's tokens come from.
    #[error(
        "TENANTRY_OIDC_ISSUER_URL ({page:?}) must be the issuer of the API's tokens \
(TENANTRY_JWT_ISSUER, {api:?}): a member's user id is the `sub` of the page's sign-in"
    )]
    IssuerMismatch {
        /// The page's issuer.
        page: String,
        /// The API tokens' issuer.
        api: String,
    },
    /// The listener could not be opened.
    #[error("cannot listen on {0}")]
    Listen(SocketAddr, #[source] std::io::Error),
}

/// The page's shared state.
#[derive(Debug)]
pub(crate) struct Page {
    api: Arc<InvitationApi>,
    cookies: CookieSealer,
    openid: Option<OpenIdClient>,
    development: bool,
    application_url: Option<String>,
    /// `scheme://host[:port]` of the public URL: POSTs from another origin are refused.
    origin: String,
}

/// An absolute http(s) URL, or the error naming `setting`.
fn http_url(setting: &'static str, value: &str) -> Result<url::Url, PageSetupError> {
    url::Url::parse(value)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .ok_or_else(|| PageSetupError::Url {
            setting,
            value: value.to_string(),
        })
}

/// The page's sign-in and URLs as `config` describes them, checked.
#[derive(Debug)]
pub(crate) struct PageSettings {
    openid: Option<OidcSettings>,
    development: bool,
    application_url: Option<String>,
    public: url::Url,
}

/// Checks the page's settings: a sign-in must exist, URLs must be URLs.
pub(crate) fn settings(config: &crate::Config) -> Result<PageSettings, PageSetupError> {
    let public = http_url("TENANTRY_PUBLIC_URL", &config.public_url)?;
    if public.path() != "/" || public.query().is_some() {
        return Err(PageSetupError::PublicPath(config.public_url.clone()));
    }
    if let Some(application) = &config.application_url {
        http_url("TENANTRY_APPLICATION_URL", application)?;
    }
    let openid = match (&config.oidc_issuer_url, &config.oidc_client_id) {
        (Some(issuer), Some(client_id)) => {
            http_url("TENANTRY_OIDC_ISSUER_URL", issuer)?;
            if let Some(api) = &config.api_token_issuer
                && api.trim_end_matches('/') != issuer.trim_end_matches('/')
            {
                return Err(PageSetupError::IssuerMismatch {
                    page: issuer.clone(),
                    api: api.clone(),
                });
            }
            Some(OidcSettings {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret: config.oidc_client_secret.clone(),
                scopes: config.oidc_scopes.clone(),
                redirect_uri: format!(
                    "{}/invitations/callback",
                    config.public_url.trim_end_matches('/')
                ),
            })
        }
        (None, None) => None,
        _ => return Err(PageSetupError::PartialOpenId),
    };
    if openid.is_none() && !config.development_sign_in {
        return Err(PageSetupError::NoSignIn);
    }
    Ok(PageSettings {
        openid,
        development: config.development_sign_in,
        application_url: config.application_url.clone(),
        public,
    })
}

/// The page over `api` with `settings`; the cookie key comes from `secrets` (the cluster's
/// internal secret, so every replica opens every replica's cookies).
pub(crate) fn build(
    settings: PageSettings,
    api: Arc<InvitationApi>,
    secrets: &CookieSecrets,
) -> Page {
    Page {
        api,
        cookies: CookieSealer::rotating(
            &secrets.current,
            secrets.previous.as_deref(),
            settings.public.scheme() == "https",
        ),
        openid: settings.openid.map(OpenIdClient::new),
        development: settings.development,
        application_url: settings.application_url,
        origin: settings.public.origin().ascii_serialization(),
    }
}

/// Opens the page's listener (so a taken port fails the start, not later).
pub(crate) fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, PageSetupError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|error| PageSetupError::Listen(addr, error))?;
    listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|error| PageSetupError::Listen(addr, error))
}

/// Serves `page` on `listener` until `shutdown`.
pub(crate) async fn serve(
    page: Page,
    listener: tokio::net::TcpListener,
    shutdown: tenantry_platform::server::Shutdown,
) {
    let address = listener.local_addr().ok();
    tracing::info!(?address, "invitation page listening");
    let router = router(Arc::new(page));
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await;
    if let Err(error) = served {
        tracing::error!(%error, "the invitation page stopped");
    }
}

fn router(page: Arc<Page>) -> Router {
    Router::new()
        .route("/invitations/accept", get(flow::show).post(flow::accept))
        .route("/invitations/decline", post(flow::decline))
        .route("/invitations/sign-in", get(sign_in::sign_in))
        .route("/invitations/callback", get(sign_in::callback))
        .route("/invitations/dev-sign-in", post(sign_in::dev_sign_in))
        .route("/invitations/sign-out", post(sign_in::sign_out))
        .route(views::STYLESHEET_PATH, get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(strict_headers))
        .with_state(page)
}

async fn stylesheet() -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from(views::STYLESHEET));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}

async fn not_found() -> Response<axum::body::Body> {
    html(
        StatusCode::NOT_FOUND,
        views::message(
            "Page not found",
            &[
                "There is nothing at this address. Invitation links look like …/invitations/accept?token=… — open the link from your e-mail.",
            ],
            None,
        ),
    )
}

/// An HTML answer.
fn html(status: StatusCode, body: String) -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The headers of every answer: nothing may frame, cache, refer from or script the page.
async fn strict_headers(mut response: Response<axum::body::Body>) -> Response<axum::body::Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests;
