//! Signing in on the invitation page: OpenID Connect (off to the provider and back), the
//! development sign-in under `tenantry up`, and signing out.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::cookies::{SESSION, SIGN_IN, random_token};
use super::flow::{
    Answer, PAGE, SESSION_SECONDS, SIGN_IN_SECONDS, Session, csrf_matches, form, form_expired,
    message, no_link, redirect, with_cookies,
};
use super::oidc::{PendingSignIn, SignInError};
use super::views;
use super::{Page, html};

fn sign_in_failed(error: &SignInError) -> Answer {
    tracing::warn!(%error, "sign-in for the invitation page failed");
    let (status, text) = match error {
        SignInError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in service cannot be reached right now. Please try again in a minute.",
        ),
        SignInError::Refused(_) | SignInError::InvalidToken(_) => (
            StatusCode::BAD_REQUEST,
            "The sign-in could not be completed. Please open the link from your e-mail and sign in again.",
        ),
    };
    html(
        status,
        views::message(
            "Sign-in failed",
            &[text],
            Some((PAGE, "Back to the invitation")),
        ),
    )
}

/// GET /invitations/sign-in: off to the identity provider (`?prompt=login`: asking it for the
/// credentials again, so another account can be chosen).
pub(super) async fn sign_in(
    State(page): State<Arc<Page>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let Some(openid) = &page.openid else {
        return super::not_found().await;
    };
    if page.link(&headers).is_none() {
        return no_link();
    }
    let prompt_login = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(key, value)| key == "prompt" && value == "login");
    match openid.begin(prompt_login).await {
        Ok((pending, url)) => redirect(
            &url,
            &[page.cookies.seal(SIGN_IN, &pending, SIGN_IN_SECONDS)],
        ),
        Err(error) => sign_in_failed(&error),
    }
}

/// GET /invitations/callback: back from the identity provider.
pub(super) async fn callback(
    State(page): State<Arc<Page>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let Some(openid) = &page.openid else {
        return super::not_found().await;
    };
    let fields: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let pending: Option<PendingSignIn> = page.cookies.open(&headers, SIGN_IN);
    let clear = page.cookies.clear(SIGN_IN);
    let Some(pending) = pending.filter(|pending| {
        fields
            .get("state")
            .is_some_and(|state| bool::from(state.as_bytes().ct_eq(pending.state.as_bytes())))
    }) else {
        return with_cookies(
            message(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                &[
                    "This sign-in was not started here or took too long. Open the link from your \
e-mail and sign in again.",
                ],
            ),
            &[clear],
        );
    };
    if fields.contains_key("error") {
        return with_cookies(
            html(
                StatusCode::OK,
                views::message(
                    "Sign-in cancelled",
                    &["You did not sign in, so the invitation was not answered."],
                    Some((PAGE, "Back to the invitation")),
                ),
            ),
            &[clear],
        );
    }
    let Some(code) = fields.get("code").filter(|code| !code.is_empty()) else {
        return with_cookies(
            sign_in_failed(&SignInError::Refused("no code".into())),
            &[clear],
        );
    };
    let signed_in = match openid.finish(&pending, code).await {
        Ok(signed_in) => signed_in,
        Err(error) => return with_cookies(sign_in_failed(&error), &[clear]),
    };
    if signed_in.sub.is_empty() || signed_in.sub.len() > 255 || signed_in.sub.contains('/') {
        return with_cookies(
            sign_in_failed(&SignInError::InvalidToken(
                "`sub` must be 1-255 characters without `/`".into(),
            )),
            &[clear],
        );
    }
    let session = Session {
        sub: signed_in.sub,
        email: signed_in.email,
        given_name: signed_in.given_name,
        family_name: signed_in.family_name,
        development: false,
        csrf: random_token(),
    };
    redirect(
        PAGE,
        &[clear, page.cookies.seal(SESSION, &session, SESSION_SECONDS)],
    )
}

/// POST /invitations/dev-sign-in: only when the development sign-in is on.
pub(super) async fn dev_sign_in(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    if !page.development {
        return super::not_found().await;
    }
    let fields = form(&body);
    let Some(link) = page.form_allowed(&headers, &fields) else {
        return form_expired();
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let email = match tenantry_platform::email::validate_email(field("email")) {
        Ok(email) if !email.contains('/') => email,
        Ok(_) => return page.sign_in_page(&link, Some("The e-mail address must not contain “/”.")),
        Err(reason) => {
            return page.sign_in_page(&link, Some(&format!("E-mail address: {reason}.")));
        }
    };
    let name = |name: &str, label: &str| {
        crate::domain::validate_name(field(name))
            .map(|value| Some(value).filter(|value| !value.is_empty()))
            .map_err(|reason| format!("{label}: {reason}."))
    };
    let (given_name, family_name) = match (
        name("given_name", "Given name"),
        name("family_name", "Family name"),
    ) {
        (Ok(given), Ok(family)) => (given, family),
        (Err(reason), _) | (_, Err(reason)) => return page.sign_in_page(&link, Some(&reason)),
    };
    let session = Session {
        sub: crate::domain::normalize_email(&email),
        email: Some(email),
        given_name,
        family_name,
        development: true,
        csrf: random_token(),
    };
    redirect(
        PAGE,
        &[page.cookies.seal(SESSION, &session, SESSION_SECONDS)],
    )
}

/// POST /invitations/sign-out.
pub(super) async fn sign_out(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    // The session's own token: signing out works after the link's cookie is gone.
    let signed_in = page.session(&headers);
    let fields = form(&body);
    if !page.same_origin(&headers)
        || !signed_in.is_some_and(|session| csrf_matches(&fields, &session.csrf))
    {
        return form_expired();
    }
    redirect(PAGE, &[page.cookies.clear(SESSION)])
}
