//! Etags of versioned rows (AIP-154): every mutable resource carries a version that starts at 1
//! and grows with each change; its etag is that number as a string. A request may send the
//! etag it read; an empty etag means "no check".

/// The etag of a row at `version`.
pub fn etag(version: i64) -> String {
    version.to_string()
}

/// Whether a request's etag allows a change of the row at `version`: empty (no check) or the
/// current version's etag. A mismatch is ABORTED (`ApiError::stale_etag`).
pub fn etag_allows(sent: &str, version: i64) -> bool {
    sent.is_empty() || sent == etag(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_current_allows() {
        assert_eq!(etag(3), "3");
        assert!(etag_allows("", 3));
        assert!(etag_allows("3", 3));
        assert!(!etag_allows("2", 3));
        assert!(!etag_allows("03", 3));
        assert!(!etag_allows(" 3", 3));
    }
}
