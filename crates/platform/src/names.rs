//! Resource names (AIP-122) shared by every service: `accounts/{account_id}`,
//! `accounts/{account_id}/members/{user_id}`, `users/{sub}`, and the children with
//! server-assigned UUIDs, `accounts/{account_id}/{collection}/{uuid}`. Parsing checks the shape:
//! an account id must be one the identifier rules allow (so a name no account can ever have is
//! INVALID_ARGUMENT, not NOT_FOUND), and a UUID must be in the form the services issue. A
//! well-shaped name of an account that does not exist is answered by authorization, not here.

use crate::error::ApiError;

/// Shortest account identifier.
pub const MIN_ACCOUNT_ID_LENGTH: usize = 3;
/// Longest account identifier the platform accepts (deployments may configure a lower limit
/// for new identifiers; names are checked against this one).
pub const MAX_ACCOUNT_ID_LENGTH: usize = 32;
/// Longest user id (`sub`) accepted in a name.
const MAX_USER_ID: usize = 255;

/// Whether `id` satisfies the account identifier rules: lower-case ASCII letters, digits and
/// single hyphens, a letter first, a letter or digit last, 3 to 32 characters. The customer
/// registry reports which rule a new identifier breaks; every name is checked with this.
pub fn is_account_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (MIN_ACCOUNT_ID_LENGTH..=MAX_ACCOUNT_ID_LENGTH).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !id.contains("--")
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
        Some(id) if is_account_id(id) => Ok(id.to_string()),
        _ => Err(ApiError::invalid_field(
            field,
            "must be an account name `accounts/{account_id}` (3 to 32 lower-case letters, \
             digits and single hyphens, starting with a letter)",
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
    if !is_account_id(account) || !plausible_user_id(user) {
        return Err(invalid());
    }
    Ok((account.to_string(), user.to_string()))
}

/// `(account_id, uuid)` in `accounts/{account_id}/{collection}/{uuid}`, the name of a child
/// whose id the service assigned (an invitation, a message). The UUID must be in the form the
/// services issue — lower-case and hyphenated — so every child has exactly one name; anything
/// else is INVALID_ARGUMENT naming `field`.
pub fn parse_account_child(
    field: &str,
    name: &str,
    collection: &str,
) -> Result<(String, String), ApiError> {
    let invalid = |what: &str| {
        ApiError::invalid_field(
            field,
            format!(
                "{what}a name `accounts/{{account_id}}/{collection}/{{id}}` with the id a \
                 lower-case hyphenated UUID"
            ),
        )
    };
    if name.is_empty() {
        return Err(invalid("required: "));
    }
    let parsed = name.strip_prefix("accounts/").and_then(|rest| {
        let (account, id) = rest.split_once('/')?;
        let id = id.strip_prefix(collection)?.strip_prefix('/')?;
        let canonical = uuid::Uuid::try_parse(id).ok()?.hyphenated().to_string();
        (is_account_id(account) && canonical == id).then(|| (account.to_string(), canonical))
    });
    parsed.ok_or_else(|| invalid("must be "))
}

/// An account identifier that passed the identifier rules (or came from a table that only holds
/// such ids). Handlers parse names into it at the edge, so nothing behind them handles an
/// unchecked `String`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// The id in the account name `name` (`accounts/{account_id}`), or INVALID_ARGUMENT naming
    /// `field`.
    pub fn from_name(field: &str, name: &str) -> Result<Self, ApiError> {
        parse_account(field, name).map(Self)
    }

    /// `id` itself, if it satisfies the identifier rules.
    pub fn parse(id: &str) -> Option<Self> {
        is_account_id(id).then(|| Self(id.to_string()))
    }

    /// An id read back from a table or an event of Tenantry's own, checked when it was first
    /// accepted.
    pub fn trusted(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The resource name, `accounts/{account_id}`.
    pub fn name(&self) -> String {
        account_name(&self.0)
    }

    /// The id as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A user id (the `sub` of their token) that passed the name rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// The id in the user name `name` (`users/{sub}`), or INVALID_ARGUMENT naming `field`.
    pub fn from_name(field: &str, name: &str) -> Result<Self, ApiError> {
        parse_user(field, name).map(Self)
    }

    /// An id read back from a table, an event or a verified token.
    pub fn trusted(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The resource name, `users/{user_id}`.
    pub fn name(&self) -> String {
        user_name(&self.0)
    }

    /// The id as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

macro_rules! id_as_str {
    ($($id:ty),*) => {$(
        impl std::ops::Deref for $id {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $id {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$id> for String {
            fn from(id: $id) -> String {
                id.0
            }
        }
        impl PartialEq<str> for $id {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $id {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    )*};
}
id_as_str!(AccountId, UserId);

/// `(account, user)` in `accounts/{account_id}/members/{user_id}`, typed.
pub fn parse_member_ids(field: &str, name: &str) -> Result<(AccountId, UserId), ApiError> {
    parse_member(field, name).map(|(account, user)| (AccountId(account), UserId(user)))
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn typed_ids() {
        let account = AccountId::from_name("parent", "accounts/acme").unwrap();
        assert_eq!(
            (account.as_str(), account.name()),
            ("acme", "accounts/acme".into())
        );
        assert!(AccountId::from_name("parent", "accounts/A").is_err());
        assert_eq!(AccountId::parse("acme"), Some(account.clone()));
        assert_eq!(AccountId::parse("a"), None);
        let user = UserId::from_name("user", "users/u-1").unwrap();
        assert_eq!(user.name(), "users/u-1");
        let (a, u) = parse_member_ids("name", "accounts/acme/members/u-1").unwrap();
        assert_eq!((a, u), (account, user));
    }

    #[test]
    fn parses_names() {
        assert_eq!(parse_account("name", "accounts/acme").unwrap(), "acme");
        assert!(parse_account("name", "accounts/").is_err());
        assert!(parse_account("name", "accounts/ACME").is_err());
        assert!(parse_account("name", "account/acme").is_err());
        assert!(parse_account("name", "accounts/acme/b").is_err());
        assert_eq!(
            parse_member("name", "accounts/acme/members/u-1").unwrap(),
            ("acme".into(), "u-1".into())
        );
        assert!(parse_member("name", "accounts/acme/members/").is_err());
        assert_eq!(parse_user("user", "users/u|1").unwrap(), "u|1");
        assert!(parse_user("user", "users/a/b").is_err());
    }

    #[test]
    fn account_ids_follow_the_identifier_rules() {
        let longest = format!("a{}", "b".repeat(31));
        for good in ["abc", "a-1", "acme-cloud-2", longest.as_str()] {
            assert!(is_account_id(good), "{good:?}");
        }
        let too_long = format!("a{}", "b".repeat(32));
        for bad in [
            "",
            "ab",
            "1abc",
            "-abc",
            "abc-",
            "a--b",
            "Abc",
            "ab_c",
            "ab c",
            "äbc",
            too_long.as_str(),
        ] {
            assert!(!is_account_id(bad), "{bad:?}");
            assert!(
                parse_account("name", &format!("accounts/{bad}")).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn child_names_need_the_canonical_uuid() {
        let id = "0190f7a4-1234-7abc-8def-0123456789ab";
        assert_eq!(
            parse_account_child(
                "name",
                &format!("accounts/acme/invitations/{id}"),
                "invitations"
            )
            .unwrap(),
            ("acme".to_string(), id.to_string())
        );
        for bad in [
            String::new(),
            format!("accounts/acme/messages/{id}"),
            format!("accounts/acme/invitations/{}", id.to_uppercase()),
            format!("accounts/acme/invitations/{{{id}}}"),
            format!("accounts/acme/invitations/urn:uuid:{id}"),
            format!("accounts/acme/invitations/{}", id.replace('-', "")),
            format!("accounts/acme/invitations/{id}/x"),
            format!("accounts/a--b/invitations/{id}"),
            format!("accounts/acme/invitations{id}"),
        ] {
            let error = parse_account_child("name", &bad, "invitations").unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    /// Identifiers the rules allow.
    fn account_id() -> impl Strategy<Value = String> {
        "[a-z](-?[a-z0-9]){2,31}".prop_filter("at most 32 characters", |id| id.len() <= 32)
    }

    /// User ids as identity providers issue them (no `/`, no control characters).
    fn user_id() -> impl Strategy<Value = String> {
        "[^/\\p{Cc}]{1,60}"
    }

    proptest! {
        /// Every identifier the rules accept round-trips through the account and member names.
        #[test]
        fn valid_identifiers_round_trip(id in account_id(), user in user_id()) {
            prop_assert!(is_account_id(&id));
            prop_assert_eq!(parse_account("name", &account_name(&id)).unwrap(), id.clone());
            prop_assert_eq!(
                parse_member("name", &member_name(&id, &user)).unwrap(),
                (id.clone(), user.clone())
            );
            prop_assert_eq!(parse_user("user", &user_name(&user)).unwrap(), user);
        }

        /// Child names round-trip for every UUID, and only its canonical spelling is a name.
        #[test]
        fn child_names_round_trip(id in account_id(), bits in any::<u128>()) {
            let uuid = uuid::Uuid::from_u128(bits);
            let name = format!("accounts/{id}/messages/{}", uuid.hyphenated());
            prop_assert_eq!(
                parse_account_child("name", &name, "messages").unwrap(),
                (id.clone(), uuid.hyphenated().to_string())
            );
            for other in [
                uuid.simple().to_string(),
                uuid.braced().to_string(),
                uuid.urn().to_string(),
            ] {
                let alias = format!("accounts/{id}/messages/{other}");
                prop_assert!(parse_account_child("name", &alias, "messages").is_err());
            }
        }

        /// No input makes a parser panic; whatever one accepts renders back to the very same
        /// name (one name per resource), and every refusal is INVALID_ARGUMENT.
        #[test]
        fn parsers_accept_only_canonical_names(raw in "(accounts/|users/)?\\PC{0,80}", any_text in any::<String>()) {
            for name in [raw.as_str(), any_text.as_str()] {
                match parse_account("f", name) {
                    Ok(id) => prop_assert_eq!(account_name(&id), name),
                    Err(error) => prop_assert_eq!(error.code(), tonic::Code::InvalidArgument),
                }
                match parse_user("f", name) {
                    Ok(id) => prop_assert_eq!(user_name(&id), name),
                    Err(error) => prop_assert_eq!(error.code(), tonic::Code::InvalidArgument),
                }
                match parse_member("f", name) {
                    Ok((account, user)) => prop_assert_eq!(member_name(&account, &user), name),
                    Err(error) => prop_assert_eq!(error.code(), tonic::Code::InvalidArgument),
                }
                match parse_account_child("f", name, "invitations") {
                    Ok((account, id)) => {
                        prop_assert_eq!(format!("accounts/{account}/invitations/{id}"), name)
                    }
                    Err(error) => prop_assert_eq!(error.code(), tonic::Code::InvalidArgument),
                }
            }
        }

        /// An identifier with any character outside the rules' alphabet is refused.
        #[test]
        fn foreign_characters_are_refused(id in account_id(), at in 0usize..32, foreign in "[^a-z0-9-]") {
            let at = at.min(id.len());
            let mut tampered = id.clone();
            tampered.insert_str(at, &foreign);
            prop_assert!(!is_account_id(&tampered));
            prop_assert!(parse_account("name", &account_name(&tampered)).is_err());
        }
    }
}
