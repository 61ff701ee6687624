//! The page's settings: it starts only with a sign-in, and only with URLs that are URLs.

use super::*;

fn config(configure: impl FnOnce(&mut crate::Config)) -> crate::Config {
    let mut config = crate::Config::default();
    configure(&mut config);
    config
}

#[test]
fn a_page_needs_a_sign_in() {
    assert!(matches!(
        settings(&config(|_| {})),
        Err(PageSetupError::NoSignIn)
    ));
    assert!(matches!(
        settings(&config(|config| config.oidc_client_id = Some("page".into()))),
        Err(PageSetupError::PartialOpenId)
    ));
    let development = settings(&config(|config| config.development_sign_in = true)).unwrap();
    assert!(development.development && development.openid.is_none());
    let openid = settings(&config(|config| {
        config.public_url = "https://invite.example.com/".into();
        config.oidc_issuer_url = Some("https://id.example.com/realms/x".into());
        config.oidc_client_id = Some("page".into());
    }))
    .unwrap();
    assert!(!openid.development);
    assert_eq!(
        openid.openid.unwrap().redirect_uri,
        "https://invite.example.com/invitations/callback"
    );
}

#[test]
fn the_sign_in_is_at_the_provider_of_the_api_tokens() {
    let page = |api: Option<&str>| {
        settings(&config(|config| {
            config.oidc_issuer_url = Some("https://id.example.com/realms/x".into());
            config.oidc_client_id = Some("page".into());
            config.api_token_issuer = api.map(str::to_string);
        }))
    };
    assert!(page(None).is_ok(), "HS256 tokens: nothing to compare");
    assert!(page(Some("https://id.example.com/realms/x/")).is_ok());
    assert!(matches!(
        page(Some("https://other.example.com")),
        Err(PageSetupError::IssuerMismatch { .. })
    ));
}

#[test]
fn urls_must_be_absolute_http_urls() {
    for bad in ["", "localhost:8080", "ftp://example.com", "http://"] {
        let refused = settings(&config(|config| {
            config.development_sign_in = true;
            config.public_url = bad.into();
        }));
        assert!(
            matches!(
                refused,
                Err(PageSetupError::Url {
                    setting: "TENANTRY_PUBLIC_URL",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    let refused = settings(&config(|config| {
        config.development_sign_in = true;
        config.public_url = "https://example.com/app".into();
    }));
    assert!(matches!(refused, Err(PageSetupError::PublicPath(_))));
    let refused = settings(&config(|config| {
        config.development_sign_in = true;
        config.application_url = Some("javascript:alert(1)".into());
    }));
    assert!(matches!(
        refused,
        Err(PageSetupError::Url {
            setting: "TENANTRY_APPLICATION_URL",
            ..
        })
    ));
}
