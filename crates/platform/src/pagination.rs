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
        Self { key: secret.into() }
    }

    fn tag(&self, scope: &str, cursor: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(cursor.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The token that continues after `cursor` for the query `scope`.
    pub fn encode(&self, scope: &str, cursor: &str) -> String {
        let tag = self.tag(scope, cursor);
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
        if token.len() > 2048 {
            return Err(invalid());
        }
        let (cursor, tag) = token.split_once('.').ok_or_else(invalid)?;
        let cursor = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let cursor = String::from_utf8(cursor).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let expected = self.tag(scope, &cursor);
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(tag.as_slice(), &expected[..TAG_BYTES]).into();
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

#[cfg(test)]
mod tests {
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
}
