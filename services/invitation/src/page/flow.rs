//! The page's steps: the link is taken out of the URL, the person signs in, sees the
//! invitation, and accepts or declines. Each answer of the API becomes a page that says what
//! happened and what to do; a refusal never shows a bare status or a stack trace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tenantry_platform::call_context::{self, CallContext};
use tenantry_platform::{Principal, UserIdentity};
use tenantry_proto::invitation::v1::{InvitationState, LookupInvitationResponse};
use tenantry_proto::membership::v1::Role;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::cookies::{LINK, SESSION, random_token};
use super::views::{self, Person, Summary};
use super::{Page, html};

/// How long the page keeps the link after it was opened.
const LINK_SECONDS: u64 = 3600;
/// How long a sign-in lasts on the page.
pub(super) const SESSION_SECONDS: u64 = 3600;
/// How long the identity provider may take to send the person back.
pub(super) const SIGN_IN_SECONDS: u64 = 600;
/// The longest link secret kept (real ones are 43 characters).
const MAX_TOKEN_CHARS: usize = 128;
/// Where every step returns to.
pub(super) const PAGE: &str = "/invitations/accept";

/// The opened link: its secret and the CSRF token of the page's forms.
#[derive(Serialize, Deserialize)]
pub(super) struct Link {
    token: String,
    csrf: String,
    /// No invitation has this link: shown again without asking (and counting) once more.
    #[serde(default)]
    dead: bool,
}

/// The signed-in person.
#[derive(Serialize, Deserialize)]
pub(super) struct Session {
    pub(super) sub: String,
    /// Verified e-mail only.
    pub(super) email: Option<String>,
    pub(super) given_name: Option<String>,
    pub(super) family_name: Option<String>,
    pub(super) development: bool,
    /// The CSRF token of the sign-out form.
    pub(super) csrf: String,
}

impl Session {
    fn identity(&self) -> UserIdentity {
        UserIdentity {
            sub: self.sub.clone(),
            // The page keeps an e-mail only when the provider (or the development sign-in)
            // vouched for it.
            email_verified: self.email.is_some(),
            email: self.email.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            operator: false,
        }
    }

    fn person(&self) -> Person {
        let name = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let label = if !name.is_empty() {
            name
        } else {
            self.email.clone().unwrap_or_else(|| self.sub.clone())
        };
        Person {
            label,
            email: self.email.clone(),
            development: self.development,
            sign_out_csrf: self.csrf.clone(),
        }
    }
}

pub(super) type Answer = Response<Body>;

pub(super) fn redirect(location: &str, cookies: &[String]) -> Answer {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    with_cookies(response, cookies)
}

pub(super) fn with_cookies(mut response: Answer, cookies: &[String]) -> Answer {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub(super) fn message(status: StatusCode, title: &str, paragraphs: &[&str]) -> Answer {
    html(status, views::message(title, paragraphs, None))
}

pub(super) fn no_link() -> Answer {
    message(
        StatusCode::BAD_REQUEST,
        "Open the link from your invitation e-mail",
        &[
            "This page answers an invitation, and it has none to show: the link was not opened \
in this browser, or more than an hour has passed since.",
            "Open the link in your invitation e-mail again.",
        ],
    )
}

fn link_does_not_work() -> Answer {
    message(
        StatusCode::NOT_FOUND,
        "This link does not work",
        &[
            "No invitation has this link. Only the latest invitation e-mail works: a newer one \
replaces the link of the earlier ones. The link may also have been copied incompletely.",
            "Open the link in the most recent invitation e-mail, or ask the person who invited \
you to send it again.",
        ],
    )
}

pub(super) fn form_expired() -> Answer {
    message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        &[
            "The page could not confirm that this request came from the invitation page you \
opened, so nothing was changed.",
            "Open the link in your invitation e-mail again and answer from there.",
        ],
    )
}

fn unavailable() -> Answer {
    let mut response = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        &[
            "The invitation service cannot answer right now. Nothing was changed.",
            "Please try again in a minute.",
        ],
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}

/// Whether the form's `csrf` field is `expected`, compared in constant time.
pub(super) fn csrf_matches(fields: &HashMap<String, String>, expected: &str) -> bool {
    fields
        .get("csrf")
        .is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())))
}

pub(super) fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn client_ip(address: &SocketAddr) -> Option<std::net::IpAddr> {
    Some(address.ip())
}

impl Page {
    pub(super) fn link(&self, headers: &HeaderMap) -> Option<Link> {
        self.cookies.open(headers, LINK)
    }

    pub(super) fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.cookies.open(headers, SESSION)
    }

    /// Whether a POST comes from the page's own origin, when the browser says. Browsers send
    /// `Origin: null` on every POST from a page with `Referrer-Policy: no-referrer`, so the
    /// origin is judged by the fetch metadata (`Sec-Fetch-Site`) first, then by an `Origin`
    /// other than `null`.
    pub(super) fn same_origin(&self, headers: &HeaderMap) -> bool {
        if let Some(site) = headers.get("sec-fetch-site")
            && site.as_bytes() != b"same-origin"
        {
            return false;
        }
        !headers.get(header::ORIGIN).is_some_and(|origin| {
            origin.as_bytes() != b"null" && origin.as_bytes() != self.origin.as_bytes()
        })
    }

    /// Whether a POST may act on the opened link: [`Page::same_origin`], with the link's CSRF
    /// token.
    pub(super) fn form_allowed(
        &self,
        headers: &HeaderMap,
        fields: &HashMap<String, String>,
    ) -> Option<Link> {
        if !self.same_origin(headers) {
            return None;
        }
        let link = self.link(headers)?;
        csrf_matches(fields, &link.csrf).then_some(link)
    }

    pub(super) fn sign_in_page(&self, link: &Link, error: Option<&str>) -> Answer {
        let development = self.development.then_some(link.csrf.as_str());
        html(
            if error.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            },
            views::sign_in(self.openid.is_some(), development, error),
        )
    }

    /// The page for a refusal of the API.
    fn refusal(&self, status: &Status) -> Answer {
        let reason = status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default();
        match (status.code(), reason.as_str()) {
            (_, "ACCOUNT_NOT_FOUND") => message(
                StatusCode::GONE,
                "The account no longer exists",
                &[
                    "The account you were invited to has been deleted, so nobody can join it. \
Nothing was changed.",
                    "If you still need access, ask the person who invited you.",
                ],
            ),
            (Code::NotFound, _) => link_does_not_work(),
            (Code::ResourceExhausted, _) => message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &[
                    "Too many links that do not work were tried from here recently.",
                    "Wait ten minutes, then open the link from your e-mail again.",
                ],
            ),
            (_, "ACCOUNT_NOT_ACTIVE") => message(
                StatusCode::CONFLICT,
                "The account is not active",
                &[
                    "The account you were invited to is disabled or being deleted, so nobody can \
join it now. Nothing was changed.",
                    "Ask the person who invited you whether it will be enabled again.",
                ],
            ),
            (_, "OWNER_LIMIT") => message(
                StatusCode::CONFLICT,
                "The account already has two owners",
                &[
                    "You were invited as an owner, and the account already has the most owners it \
may have. Nothing was changed.",
                    "Ask the person who invited you to change the invitation's role or free an \
owner's place.",
                ],
            ),
            (Code::Unavailable | Code::DeadlineExceeded | Code::Aborted, _) => unavailable(),
            _ => {
                tracing::warn!(code = ?status.code(), %reason, "the invitation page met an unexpected refusal");
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    &[
                        "The invitation could not be shown or answered, and nothing was changed.",
                        "Please try again later. If it keeps happening, tell the person who invited you.",
                    ],
                )
            }
        }
    }

    /// The page for the invitation as LookupInvitation shows it to `session`.
    fn invitation(
        &self,
        found: &LookupInvitationResponse,
        session: &Session,
        link: &Link,
    ) -> Answer {
        let summary = summary(found);
        let person = session.person();
        let csrf = link.csrf.as_str();
        let closed = |status, title: &str, text: &str| {
            html(status, views::closed(title, text, &summary, &person))
        };
        match found.state() {
            InvitationState::Pending if found.email_matches => {
                html(StatusCode::OK, views::answer(&summary, &person, csrf))
            }
            InvitationState::Pending => html(
                StatusCode::FORBIDDEN,
                views::wrong_email(&summary, &person, self.openid.is_some()),
            ),
            InvitationState::Accepted => closed(
                StatusCode::GONE,
                "This invitation was already used",
                "It has been accepted, and a link works once. If you accepted it, you are a member \
already: open the application. Otherwise ask the person who invited you for a new invitation.",
            ),
            InvitationState::Declined => closed(
                StatusCode::GONE,
                "This invitation was declined",
                "It was declined, so it can no longer be accepted. If you want to join after all, \
ask the person who invited you for a new invitation.",
            ),
            InvitationState::Revoked => closed(
                StatusCode::GONE,
                "This invitation was withdrawn",
                "An administrator of the account withdrew it, or you were added to the account \
another way. If you still need access, ask the person who invited you.",
            ),
            InvitationState::Expired => closed(
                StatusCode::GONE,
                "This invitation has expired",
                "It was not answered in time. Ask the person who invited you to send it again: \
the new e-mail has a new link.",
            ),
            InvitationState::Unspecified => self.refusal(&Status::internal("unknown state")),
        }
    }
}

fn role_words(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Owner) => "Owner",
        Ok(Role::Admin) => "Administrator",
        Ok(Role::Employee) => "Employee",
        _ => "Member",
    }
}

fn summary(found: &LookupInvitationResponse) -> Summary {
    let expires = found
        .expire_time
        .as_ref()
        .and_then(|time| chrono::DateTime::from_timestamp(time.seconds, 0))
        .map(|time| time.format("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_default();
    Summary {
        account: if found.account_display_name.is_empty() {
            found.account.clone()
        } else {
            found.account_display_name.clone()
        },
        inviter: found.inviter_display_name.clone(),
        role: role_words(found.role),
        email: found.email.clone(),
        expires,
    }
}

/// GET /invitations/accept: with `?token=`, keeps the secret in a cookie and redirects to the
/// bare page; without, shows the step the person is at.
pub(super) async fn show(
    State(page): State<Arc<Page>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    if let Some(query) = query {
        let token = url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned());
        return match token {
            Some(token) if !token.is_empty() && token.chars().count() <= MAX_TOKEN_CHARS => {
                let link = Link {
                    token,
                    csrf: random_token(),
                    dead: false,
                };
                redirect(PAGE, &[page.cookies.seal(LINK, &link, LINK_SECONDS)])
            }
            Some(_) => message(
                StatusCode::BAD_REQUEST,
                "This link is not complete",
                &[
                    "The link's code is empty or damaged. Open the link from your invitation e-mail \
again; if your mail program split it over two lines, copy all of it.",
                ],
            ),
            None => redirect(PAGE, &[]),
        };
    }
    let Some(link) = page.link(&headers) else {
        return no_link();
    };
    if link.dead {
        return link_does_not_work();
    }
    let Some(session) = page.session(&headers) else {
        return page.sign_in_page(&link, None);
    };
    match page
        .api
        .lookup_link(&session.identity(), client_ip(&address), &link.token)
        .await
    {
        Ok(found) => page.invitation(&found, &session, &link),
        // Reloading the page must not count as another guess against the limits.
        Err(status) if status.code() == Code::NotFound => {
            let dead = Link { dead: true, ..link };
            with_cookies(
                page.refusal(&status),
                &[page.cookies.seal(LINK, &dead, LINK_SECONDS)],
            )
        }
        Err(status) => page.refusal(&status),
    }
}

/// The signed-in person and the link of an allowed POST, or the page that refuses it.
fn acting(page: &Page, headers: &HeaderMap, body: &Bytes) -> Result<(Link, Session), Answer> {
    let fields = form(body);
    let link = page
        .form_allowed(headers, &fields)
        .ok_or_else(form_expired)?;
    let session = page.session(headers).ok_or_else(|| redirect(PAGE, &[]))?;
    Ok((link, session))
}

/// Whether a refusal of Accept/Decline is about the invitation itself (replaced, another
/// e-mail address, no longer PENDING), which the page, shown again, explains.
fn explained_by_the_page(status: &Status) -> bool {
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    match status.code() {
        Code::NotFound => reason == "INVITATION_NOT_FOUND",
        Code::PermissionDenied => reason == "EMAIL_MISMATCH",
        Code::FailedPrecondition => reason.starts_with("INVITATION_"),
        _ => false,
    }
}

/// The call a POST of the page makes for `user`: its changes are attributed like those of the
/// API's own calls (the request id, the role the handler records), since the page is served
/// outside the gRPC edge that opens one for every call.
fn call_of(headers: &HeaderMap, user: &UserIdentity) -> Arc<CallContext> {
    Arc::new(CallContext::of_call(
        headers,
        &Principal::User(user.clone()),
    ))
}

/// POST /invitations/accept.
pub(super) async fn accept(
    State(page): State<Arc<Page>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (link, session) = match acting(&page, &headers, &body) {
        Ok(acting) => acting,
        Err(refused) => return refused,
    };
    let user = session.identity();
    let ip = client_ip(&address);
    let found = match page.api.lookup_link(&user, ip, &link.token).await {
        Ok(found) => found,
        Err(status) => return page.refusal(&status),
    };
    let call = call_of(&headers, &user);
    match call_context::scope(call, page.api.accept_link(&user, ip, &link.token)).await {
        Ok(member) => {
            let summary = summary(&found);
            html(
                StatusCode::OK,
                views::accepted(
                    &summary.account,
                    role_words(member.role),
                    page.application_url.as_deref(),
                ),
            )
        }
        Err(status) if explained_by_the_page(&status) => redirect(PAGE, &[]),
        Err(status) => page.refusal(&status),
    }
}

/// POST /invitations/decline.
pub(super) async fn decline(
    State(page): State<Arc<Page>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (link, session) = match acting(&page, &headers, &body) {
        Ok(acting) => acting,
        Err(refused) => return refused,
    };
    let user = session.identity();
    let call = call_of(&headers, &user);
    match call_context::scope(
        call,
        page.api
            .decline_link(&user, client_ip(&address), &link.token),
    )
    .await
    {
        Ok(declined) => {
            let account = if declined.account_display_name.is_empty() {
                declined.account
            } else {
                declined.account_display_name
            };
            html(StatusCode::OK, views::declined(&account))
        }
        Err(status) if explained_by_the_page(&status) => redirect(PAGE, &[]),
        Err(status) => page.refusal(&status),
    }
}
