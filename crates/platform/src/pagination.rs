//! Opaque page tokens and page sizes (AIP-158).
//!
//! A token is the last key of the previous page plus an HMAC over that key and the query it
//! belongs to, so a token cannot be forged, edited, or replayed against another query or
//! parent: any of those is INVALID_ARGUMENT naming `page_token`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;

/// Page size when the caller sends 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page size; larger requests are served this many.
pub const MAX_PAGE_SIZE: u64 = 1000;
const TAG_BYTES: usize = 16;

/// Signs and checks page tokens with a key every replica shares.
#[derive(Clone)]
pub struct PageTokens {
    key: std::sync::Arc<[u8]>,
    /// A key also accepted, never used to sign: the one before a rotation of the internal
    /// secret (or after, on a replica not yet rolled), so a client paging through a list while
    /// replicas roll keeps its place.
    previous: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

/// What a list call should read: at most `size` items after `after` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return.
    pub size: u64,
    /// The last key of the previous page, if this is not the first page.
    pub after: Option<String>,
}

impl PageTokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.into(),
            previous: None,
        }
    }

    /// These tokens, also accepting ones signed with `previous`.
    pub fn accepting_previous(self, previous: Option<&[u8]>) -> Self {
        Self {
            previous: previous.map(Into::into),
            ..self
        }
    }

    /// The token that continues after `cursor` for the query `scope`.
    pub fn encode(&self, scope: &str, cursor: &str) -> String {
        let tag = tag(&self.key, scope, cursor);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(cursor),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The cursor inside `token`, `None` for the empty token (first page).
    pub fn decode(&self, scope: &str, token: &str) -> Result<Option<String>, ApiError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            ApiError::invalid_field(
                "page_token",
                "not a page token issued for this query; start again with an empty page_token",
            )
        };
        // No length limit of its own: one refused tokens `encode` issues for cursors over 1.5 KB
        // (found by fuzzing); the request size limit bounds the work.
        let (cursor, tag) = token.split_once('.').ok_or_else(invalid)?;
        let cursor = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let cursor = String::from_utf8(cursor).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let signed_with = |key: &[u8]| -> bool {
            let expected = self::tag(key, scope, &cursor);
            subtle::ConstantTimeEq::ct_eq(tag.as_slice(), &expected[..TAG_BYTES]).into()
        };
        let matches = signed_with(&self.key) || self.previous.as_deref().is_some_and(signed_with);
        if !matches {
            return Err(invalid());
        }
        Ok(Some(cursor))
    }

    /// Validates `page_size` and decodes `page_token` for the query `scope`.
    pub fn request(
        &self,
        scope: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<PageRequest, ApiError> {
        let size = match page_size {
            size if size < 0 => {
                return Err(ApiError::invalid_field(
                    "page_size",
                    "must not be negative (0 means the default of 50)",
                ));
            }
            0 => DEFAULT_PAGE_SIZE,
            size => (size as u64).min(MAX_PAGE_SIZE),
        };
        Ok(PageRequest {
            size,
            after: self.decode(scope, page_token)?,
        })
    }

    /// Trims `items` (read with one extra row) to the page and returns the next page token:
    /// empty when there is no further page.
    pub fn finish<T>(
        &self,
        scope: &str,
        request: &PageRequest,
        items: &mut Vec<T>,
        key_of: impl Fn(&T) -> String,
    ) -> String {
        if (items.len() as u64) <= request.size {
            return String::new();
        }
        items.truncate(request.size as usize);
        items
            .last()
            .map(|last| self.encode(scope, &key_of(last)))
            .unwrap_or_default()
    }
}

/// The HMAC of `cursor` within the query `scope` under `key`.
fn tag(key: &[u8], scope: &str, cursor: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(scope.as_bytes());
    mac.update(&[0]);
    mac.update(cursor.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let tokens = PageTokens::new(b"k");
        let token = tokens.encode("q", "acme");
        assert_eq!(tokens.decode("q", &token).unwrap().as_deref(), Some("acme"));
        assert!(tokens.decode("other-query", &token).is_err());
        let forged = tokens.encode("q", "zzz").replace(
            URL_SAFE_NO_PAD.encode("zzz").as_str(),
            &URL_SAFE_NO_PAD.encode("aaa"),
        );
        assert!(tokens.decode("q", &forged).is_err());
        assert!(tokens.decode("q", "garbage").is_err());
        assert!(PageTokens::new(b"other").decode("q", &token).is_err());
    }

    /// Regression (fuzz target page_token): a token for a long cursor was refused by a length
    /// limit on tokens that `encode` did not respect.
    #[test]
    fn tokens_of_the_previous_key_are_accepted_during_a_rotation() {
        let old = PageTokens::new(b"old");
        let rotating = PageTokens::new(b"new").accepting_previous(Some(b"old"));
        let token = old.encode("q", "acme");
        assert_eq!(
            rotating.decode("q", &token).unwrap().as_deref(),
            Some("acme")
        );
        assert!(PageTokens::new(b"new").decode("q", &token).is_err());
        let issued = rotating.encode("q", "zeta");
        assert_eq!(
            PageTokens::new(b"new")
                .decode("q", &issued)
                .unwrap()
                .as_deref(),
            Some("zeta")
        );
        assert!(
            rotating
                .decode("q", "YWNtZQ.AAAAAAAAAAAAAAAAAAAAAA")
                .is_err()
        );
    }

    #[test]
    fn tokens_for_long_cursors_round_trip() {
        let tokens = PageTokens::new(b"k");
        let cursor = "c".repeat(5000);
        let token = tokens.encode("q", &cursor);
        assert_eq!(tokens.decode("q", &token).unwrap(), Some(cursor));
    }

    #[test]
    fn page_sizes() {
        let tokens = PageTokens::new(b"k");
        assert_eq!(tokens.request("q", 0, "").unwrap().size, 50);
        assert_eq!(tokens.request("q", 5000, "").unwrap().size, 1000);
        assert!(tokens.request("q", -1, "").is_err());
    }

    #[test]
    fn finish_trims_the_lookahead_row() {
        let tokens = PageTokens::new(b"k");
        let request = tokens.request("q", 2, "").unwrap();
        let mut items = vec!["a", "b", "c"];
        let next = tokens.finish("q", &request, &mut items, |s| s.to_string());
        assert_eq!(items, vec!["a", "b"]);
        assert_eq!(tokens.decode("q", &next).unwrap().as_deref(), Some("b"));
        let mut items = vec!["a"];
        assert!(
            tokens
                .finish("q", &request, &mut items, |s| s.to_string())
                .is_empty()
        );
    }

    proptest! {
        /// Every token decodes to the cursor it was made from, for any scope and cursor.
        #[test]
        fn tokens_round_trip(scope in any::<String>(), cursor in any::<String>()) {
            let tokens = PageTokens::new(b"key");
            let token = tokens.encode(&scope, &cursor);
            prop_assert_eq!(tokens.decode(&scope, &token).unwrap(), Some(cursor));
        }

        /// A token altered in any one byte — to any other ASCII character — is refused.
        #[test]
        fn a_token_altered_in_any_byte_is_refused(
            cursor in "\\PC{0,40}",
            at in any::<prop::sample::Index>(),
            replacement in 0x20u8..0x7f,
        ) {
            let tokens = PageTokens::new(b"key");
            let token = tokens.encode("q", &cursor);
            let at = at.index(token.len());
            prop_assume!(token.as_bytes()[at] != replacement);
            let mut altered = token.into_bytes();
            altered[at] = replacement;
            let altered = String::from_utf8(altered).expect("ASCII");
            let error = tokens.decode("q", &altered).unwrap_err();
            prop_assert_eq!(error.code(), tonic::Code::InvalidArgument);
        }

        /// Every proper prefix of a token, and the token under another scope or key, is refused.
        #[test]
        fn truncated_or_foreign_tokens_are_refused(cursor in "\\PC{0,40}", scope in "[a-z|]{1,12}") {
            let tokens = PageTokens::new(b"key");
            let token = tokens.encode(&scope, &cursor);
            for end in 1..token.len() {
                prop_assert!(tokens.decode(&scope, &token[..end]).is_err());
            }
            let other_scope = format!("{scope}x");
            prop_assert!(tokens.decode(&other_scope, &token).is_err());
            prop_assert!(PageTokens::new(b"other key").decode(&scope, &token).is_err());
        }

        /// No input makes decoding panic; whatever it accepts is exactly the token it would
        /// issue (no second spelling of a page), every refusal names `page_token`.
        #[test]
        fn decoding_accepts_only_issued_tokens(token in any::<String>()) {
            let tokens = PageTokens::new(b"key");
            match tokens.decode("q", &token) {
                Ok(None) => prop_assert!(token.is_empty()),
                Ok(Some(cursor)) => prop_assert_eq!(tokens.encode("q", &cursor), token),
                Err(error) => prop_assert!(error.message().starts_with("page_token:")),
            }
        }

        /// Negative sizes are refused naming `page_size`; 0 is the default; the rest is capped.
        #[test]
        fn page_sizes_are_checked_and_capped(size in any::<i32>()) {
            let tokens = PageTokens::new(b"key");
            match tokens.request("q", size, "") {
                Ok(page) => {
                    prop_assert!(size >= 0);
                    let expected = if size == 0 { DEFAULT_PAGE_SIZE } else { (size as u64).min(MAX_PAGE_SIZE) };
                    prop_assert_eq!(page.size, expected);
                }
                Err(error) => {
                    prop_assert!(size < 0);
                    prop_assert!(error.message().starts_with("page_size:"));
                }
            }
        }

        /// A page holds at most `size` items and continues after its last one.
        #[test]
        fn finish_pages_through_everything(count in 0usize..40, size in 1i32..10) {
            let tokens = PageTokens::new(b"key");
            let all: Vec<String> = (0..count).map(|n| format!("{n:03}")).collect();
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = tokens.request("q", size, &token).unwrap();
                let mut items: Vec<String> = all
                    .iter()
                    .filter(|item| page.after.as_ref().is_none_or(|after| *item > after))
                    .take(page.size as usize + 1)
                    .cloned()
                    .collect();
                token = tokens.finish("q", &page, &mut items, Clone::clone);
                prop_assert!(items.len() <= size as usize);
                seen.extend(items);
                if token.is_empty() {
                    break;
                }
            }
            prop_assert_eq!(seen, all);
        }
    }
}
