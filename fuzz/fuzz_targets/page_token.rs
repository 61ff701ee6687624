//! Page tokens (`crates/platform/src/pagination.rs`) as callers send them: any text, with any
//! scope and page size. Decoding never panics; a refusal names `page_token` or `page_size`; a
//! token that is accepted is exactly the one the server would issue for its cursor (no second
//! spelling of a page); every issued token decodes back to its cursor.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_platform::pagination::PageTokens;

fuzz_target!(|data: &[u8]| {
    let Some((size_bytes, rest)) = data.split_at_checked(4) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let page_size =
        i32::from_le_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
    // "scope NUL token": the scope binds a token to its query.
    let (scope, token) = text
        .split_once('\0')
        .unwrap_or(("ListAccounts|NOT_DELETED", text));
    let tokens = PageTokens::new(b"fuzzing page-token key");

    match tokens.decode(scope, token) {
        Ok(None) => assert!(token.is_empty()),
        Ok(Some(cursor)) => assert_eq!(tokens.encode(scope, &cursor), token, "a second spelling"),
        Err(error) => assert!(error.message().starts_with("page_token: "), "{error}"),
    }
    match tokens.request(scope, page_size, token) {
        Ok(page) => assert!((1..=1000).contains(&page.size)),
        Err(error) => {
            let message = error.message();
            assert!(message.starts_with("page_token: ") || message.starts_with("page_size: "));
        }
    }
    // The input as a cursor: issued, it decodes back, and only for its own scope.
    let issued = tokens.encode(scope, token);
    assert_eq!(
        tokens.decode(scope, &issued).ok().flatten().as_deref(),
        Some(token)
    );
    let other_scope = format!("{scope}|other");
    assert!(tokens.decode(&other_scope, &issued).is_err());
});
