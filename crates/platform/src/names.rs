//! Resource names (AIP-122) shared by every service: `accounts/{account_id}`,
//! `accounts/{account_id}/members/{user_id}`, `users/{sub}`. Parsing checks the shape only;
//! the identifier rules themselves belong to the customer registry, and a well-shaped name of
//! an account that does not exist is answered by authorization, not here.

use crate::error::ApiError;

/// Longest identifier segment accepted in a name (the registry's rules are stricter).
const MAX_SEGMENT: usize = 64;
/// Longest user id (`sub`) accepted in a name.
const MAX_USER_ID: usize = 255;

fn plausible_account_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SEGMENT
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn plausible_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_USER_ID
        && !id.contains('/')
        && !id.chars().any(char::is_control)
}

/// The account id in `accounts/{account_id}`.
pub fn parse_account(field: &str, name: &str) -> Result<String, ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            "required: an account name `accounts/{account_id}`",
        ));
    }
    match name.strip_prefix("accounts/") {
        Some(id) if plausible_account_id(id) => Ok(id.to_string()),
        _ => Err(ApiError::invalid_field(
            field,
            "must be an account name `accounts/{account_id}` (lower-case letters, digits, hyphens)",
        )),
    }
}

/// The user id in `users/{sub}`.
pub fn parse_user(field: &str, name: &str) -> Result<String, ApiError> {
    match name.strip_prefix("users/") {
        Some(id) if plausible_user_id(id) => Ok(id.to_string()),
        _ => Err(ApiError::invalid_field(
            field,
            "must be a user name `users/{user_id}`",
        )),
    }
}

/// `(account_id, user_id)` in `accounts/{account_id}/members/{user_id}`.
pub fn parse_member(field: &str, name: &str) -> Result<(String, String), ApiError> {
    let invalid = || {
        ApiError::invalid_field(
            field,
            "must be a member name `accounts/{account_id}/members/{user_id}`",
        )
    };
    let rest = name.strip_prefix("accounts/").ok_or_else(invalid)?;
    let (account, user) = rest.split_once("/members/").ok_or_else(invalid)?;
    if !plausible_account_id(account) || !plausible_user_id(user) {
        return Err(invalid());
    }
    Ok((account.to_string(), user.to_string()))
}

/// `accounts/{account_id}`.
pub fn account_name(account_id: &str) -> String {
    format!("accounts/{account_id}")
}

/// `users/{user_id}`.
pub fn user_name(user_id: &str) -> String {
    format!("users/{user_id}")
}

/// `accounts/{account_id}/members/{user_id}`.
pub fn member_name(account_id: &str, user_id: &str) -> String {
    format!("accounts/{account_id}/members/{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(parse_account("name", "accounts/acme").unwrap(), "acme");
        assert!(parse_account("name", "accounts/").is_err());
        assert!(parse_account("name", "accounts/ACME").is_err());
        assert!(parse_account("name", "account/acme").is_err());
        assert!(parse_account("name", "accounts/a/b").is_err());
        assert_eq!(
            parse_member("name", "accounts/acme/members/u-1").unwrap(),
            ("acme".into(), "u-1".into())
        );
        assert!(parse_member("name", "accounts/acme/members/").is_err());
        assert_eq!(parse_user("user", "users/u|1").unwrap(), "u|1");
        assert!(parse_user("user", "users/a/b").is_err());
    }
}
