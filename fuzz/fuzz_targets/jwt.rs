//! Bearer tokens (`crates/platform/src/auth`), verified as the edge layer does for every call,
//! with an authenticator that trusts an HS256 user secret, the internal secret of service
//! tokens, and an identity provider's ES256 key served from a JWKS URL (a local HTTP server).
//!
//! The first input byte picks how the rest is used:
//! 0. the `authorization` header value, as sent;
//! 1. the token text, as sent;
//! 2. `header JSON NUL claims JSON`, signed with the user secret (or, if the byte after the
//!    mode is odd, the internal secret), so claim parsing is reached with a valid signature;
//! 3. claims JSON under an ES256 header naming the provider's key, signed with its private key.
//!
//! Nothing panics; a refusal is UNAUTHENTICATED (UNAVAILABLE if the keys cannot be fetched); an accepted user has a `sub` of 1 to 255
//! characters without `/`, an accepted service was signed with the internal secret.

#![no_main]

use std::io::{Read, Write};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tenantry_platform::config::AuthConfig;
use tenantry_platform::{Authenticator, Principal};

const USER_SECRET: &str = "fuzzing user secret";
const INTERNAL_SECRET: &str = "fuzzing internal secret";
/// A P-256 key made for tests only (the one of `crates/platform/src/auth/jwks.rs`'s tests).
const PROVIDER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9BIf7YdLOIgwQIup
UOSNYGv8Wqqg0DoVdTboIYOFpzOhRANCAATR93mK//m+AH7oki/Zbibe7RYGPo10
QupCRacIPy+g2titizsKj1Jq44HzmCutGcsrKiQ6hxiche9dL7Sraf9B
-----END PRIVATE KEY-----
";
const PROVIDER_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"idp-key-1","use":"sig","alg":"ES256","x":"0fd5iv_5vgB-6JIv2W4m3u0WBj6NdELqQkWnCD8voNo","y":"2K2LOwqPUmrjgfOYK60ZyysqJDqHGJyF710vtKtp_0E"}]}"#;
const PROVIDER_HEADER: &str = r#"{"alg":"ES256","typ":"JWT","kid":"idp-key-1"}"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    authenticator: Authenticator,
    user_key: EncodingKey,
    internal_key: EncodingKey,
    provider_key: EncodingKey,
}

/// Serves the provider's JWKS to every request, on a thread of its own.
fn serve_jwks() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let url = format!(
        "http://{}/jwks.json",
        listener.local_addr().expect("address")
    );
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PROVIDER_JWKS}",
                PROVIDER_JWKS.len()
            );
            let _ = socket.write_all(response.as_bytes());
        }
    });
    url
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let config = AuthConfig {
        jwks_url: Some(serve_jwks()),
        ..AuthConfig::with_secrets(USER_SECRET, INTERNAL_SECRET)
    };
    Fixture {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        authenticator: Authenticator::new(config).expect("an authenticator"),
        user_key: EncodingKey::from_secret(USER_SECRET.as_bytes()).expect("a key"),
        internal_key: EncodingKey::from_secret(INTERNAL_SECRET.as_bytes()).expect("a key"),
        provider_key: EncodingKey::from_ec_pem(PROVIDER_KEY.as_bytes()).expect("the test key"),
    }
});

/// `header.claims.signature`, signed with `key`.
fn signed(header: &[u8], claims: &[u8], key: &EncodingKey, algorithm: Algorithm) -> Option<String> {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm).ok()?;
    Some(format!("{message}.{signature}"))
}

fn check(result: Result<Principal, tenantry_platform::ApiError>, internal_signed: bool) {
    match result {
        Ok(Principal::User(user)) => {
            assert!((1..=255).contains(&user.sub.len()) && !user.sub.contains('/'));
        }
        Ok(Principal::Service(_)) => assert!(internal_signed, "a service token not signed by us"),
        // UNAVAILABLE only if the provider's keys could not be fetched.
        Err(error) => assert!(
            matches!(
                error.code(),
                tonic::Code::Unauthenticated | tonic::Code::Unavailable
            ),
            "{error}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let verify = |token: &str| {
        fixture
            .runtime
            .block_on(fixture.authenticator.verify(token))
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let Ok(value) = http::HeaderValue::from_bytes(rest) else {
                return;
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            check(
                fixture
                    .runtime
                    .block_on(fixture.authenticator.authenticate(&headers)),
                false,
            );
        }
        1 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(verify(token), false);
            }
        }
        2 => {
            let Some((&key_choice, rest)) = rest.split_first() else {
                return;
            };
            let internal = key_choice % 2 == 1;
            let key = if internal {
                &fixture.internal_key
            } else {
                &fixture.user_key
            };
            let (header, claims) = match rest.iter().position(|byte| *byte == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
            };
            if let Some(token) = signed(header, claims, key, Algorithm::HS256) {
                check(verify(&token), internal);
            }
        }
        _ => {
            let token = signed(
                PROVIDER_HEADER.as_bytes(),
                rest,
                &fixture.provider_key,
                Algorithm::ES256,
            );
            if let Some(token) = token {
                check(verify(&token), false);
            }
        }
    }
});
