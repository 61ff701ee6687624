//! The two user-chosen strings of an account: its identifier (immutable, unique for ever) and
//! its display name (mutable). Validation reports every rule a value breaks, in words a person
//! can act on.

use std::fmt;

use tenantry_platform::text::is_forbidden_in_line;

/// Shortest identifier accepted.
pub const MIN_ACCOUNT_ID_LENGTH: usize = 3;
/// Longest identifier the platform ever accepts; deployments may lower it down to
/// [`MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH`].
pub const MAX_ACCOUNT_ID_LENGTH: usize = 32;
/// The lowest value the configurable maximum identifier length may take.
pub const MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH: usize = 16;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 120;

/// A valid identifier for a new account: lower-case ASCII letters, digits and single hyphens,
/// starting with a letter, ending with a letter or digit, 3 to the configured maximum
/// characters. These are the creation rules, reported rule by rule; once accepted, the
/// identifier travels as a [`tenantry_platform::AccountId`] (see the `From` below), like every
/// identifier parsed from a resource name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// Checks `raw` against every identifier rule; the error lists each rule it breaks.
    pub fn parse(raw: &str, max_length: usize) -> Result<Self, InvalidValue> {
        let mut problems = Vec::new();
        if raw.is_empty() {
            return Err(InvalidValue::new(vec![
                "required: choose an identifier of lower-case letters, digits and hyphens".into(),
            ]));
        }
        let length = raw.chars().count();
        if length < MIN_ACCOUNT_ID_LENGTH {
            problems.push(format!(
                "must be at least {MIN_ACCOUNT_ID_LENGTH} characters long (is {length})"
            ));
        }
        if length > max_length {
            problems.push(format!(
                "must be at most {max_length} characters long (is {length})"
            ));
        }
        if raw.chars().any(|c| c.is_ascii_uppercase()) {
            problems.push("must be lower case (upper-case letters are not allowed)".into());
        }
        let foreign: Vec<char> = raw
            .chars()
            .filter(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            .collect();
        if let Some(first) = foreign.first() {
            problems.push(format!(
                "may contain only lower-case ASCII letters, digits and hyphens (found {first:?})"
            ));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
            problems.push("must start with a lower-case letter".into());
        }
        if !raw.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            problems.push("must end with a lower-case letter or a digit".into());
        }
        if raw.contains("--") {
            problems.push("must not contain consecutive hyphens (`--`)".into());
        }
        if problems.is_empty() {
            Ok(Self(raw.to_string()))
        } else {
            Err(InvalidValue::new(problems))
        }
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every identifier the creation rules accept is one the platform's name rules accept (the
/// creation rules only add a configurable, lower maximum length), so the conversion is exact.
impl From<AccountId> for tenantry_platform::AccountId {
    fn from(id: AccountId) -> Self {
        tenantry_platform::AccountId::trusted(id.0)
    }
}

/// A valid display name: trimmed, 1..=120 characters, in any script, without control
/// characters, line separators, bidirectional controls or invisible characters
/// ([`tenantry_platform::text::is_forbidden_in_line`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims `raw` and checks it; the error lists each rule the trimmed value breaks.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue::new(vec![
                "required: must contain at least one non-blank character".into(),
            ]));
        }
        let mut problems = Vec::new();
        let length = trimmed.chars().count();
        if length > MAX_DISPLAY_NAME_CHARS {
            problems.push(format!(
                "must be at most {MAX_DISPLAY_NAME_CHARS} characters long (is {length})"
            ));
        }
        if trimmed.chars().any(is_forbidden_in_line) {
            problems.push(
                "must not contain control characters (such as line breaks or tabs), \
                 bidirectional controls or invisible characters"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(Self(trimmed.to_string()))
        } else {
            Err(InvalidValue::new(problems))
        }
    }

    /// A display name read back from storage.
    pub fn trusted(stored: String) -> Self {
        Self(stored)
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rules a value breaks, each described for the person who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    /// One description per broken rule.
    pub problems: Vec<String>,
}

impl InvalidValue {
    fn new(problems: Vec<String>) -> Self {
        Self { problems }
    }

    /// All problems in one sentence, for a `BadRequest` field violation.
    pub fn description(&self) -> String {
        self.problems.join("; ")
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_problems(raw: &str, max: usize) -> Vec<String> {
        match AccountId::parse(raw, max) {
            Ok(_) => Vec::new(),
            Err(invalid) => invalid.problems,
        }
    }

    #[test]
    fn identifier_rules() {
        let a32 = format!("a{}", "b".repeat(31));
        let a33 = format!("a{}", "b".repeat(32));
        // (input, max length, expected fragment of a problem, or None when valid)
        let cases: Vec<(&str, usize, Option<&str>)> = vec![
            ("acme", 32, None),
            ("abc", 32, None),
            ("a1-b2-c3", 32, None),
            ("a-1", 32, None),
            (a32.as_str(), 32, None),
            ("", 32, Some("required")),
            ("ab", 32, Some("at least 3 characters")),
            ("a", 32, Some("at least 3 characters")),
            (a33.as_str(), 32, Some("at most 32 characters")),
            ("1abc", 32, Some("start with a lower-case letter")),
            ("-abc", 32, Some("start with a lower-case letter")),
            ("abc-", 32, Some("end with a lower-case letter or a digit")),
            ("ab--cd", 32, Some("consecutive hyphens")),
            ("Acme", 32, Some("lower case")),
            ("acMe", 32, Some("lower case")),
            ("acme_co", 32, Some("found '_'")),
            ("acme co", 32, Some("found ' '")),
            ("äcme", 32, Some("start with a lower-case letter")),
            ("acmé", 32, Some("found 'é'")),
            ("a.b", 32, Some("found '.'")),
            ("abcdefghijklmnop", 16, None),
            (
                "abcdefghijklmnopq",
                16,
                Some("at most 16 characters long (is 17)"),
            ),
        ];
        for (input, max, expected) in cases {
            let problems = id_problems(input, max);
            match expected {
                None => assert!(
                    problems.is_empty(),
                    "{input:?} should be valid: {problems:?}"
                ),
                Some(fragment) => assert!(
                    problems.iter().any(|p| p.contains(fragment)),
                    "{input:?} (max {max}) should report {fragment:?}, got {problems:?}"
                ),
            }
        }
    }

    #[test]
    fn identifier_reports_every_broken_rule() {
        let problems = id_problems("9A--", 32);
        assert!(problems.iter().any(|p| p.contains("start with")));
        assert!(problems.iter().any(|p| p.contains("end with")));
        assert!(problems.iter().any(|p| p.contains("consecutive")));
        assert!(problems.iter().any(|p| p.contains("lower case")));
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn unicode_length_counts_characters() {
        // Three characters, six bytes: too long is not the complaint, the letters are.
        let problems = id_problems("aéé", 32);
        assert!(!problems.iter().any(|p| p.contains("at least")));
        assert!(problems.iter().any(|p| p.contains("found 'é'")));
    }

    #[test]
    fn display_name_rules() {
        let max = "x".repeat(120);
        let too_long = "x".repeat(121);
        let unicode_max = "é".repeat(120); // 240 bytes, 120 characters
        let cases: Vec<(&str, Result<&str, &str>)> = vec![
            ("Acme Corp", Ok("Acme Corp")),
            ("  Acme  ", Ok("Acme")),
            ("\tAcme\n", Ok("Acme")),
            ("A", Ok("A")),
            (max.as_str(), Ok(max.as_str())),
            (unicode_max.as_str(), Ok(unicode_max.as_str())),
            ("Zürich AG 🚀", Ok("Zürich AG 🚀")),
            ("", Err("required")),
            ("   ", Err("required")),
            (
                too_long.as_str(),
                Err("at most 120 characters long (is 121)"),
            ),
            ("Acme\nCorp", Err("control characters")),
            ("Acme\u{7}", Err("control characters")),
            ("Ac\u{0}me", Err("control characters")),
            ("Acme\u{2028}Corp", Err("control characters")),
            ("Acme \u{202e}proC", Err("bidirectional controls")),
            ("Ac\u{200b}me", Err("invisible characters")),
            ("Gl\u{43e}bex", Ok("Gl\u{43e}bex")),
        ];
        for (input, expected) in cases {
            match (DisplayName::parse(input), expected) {
                (Ok(name), Ok(want)) => assert_eq!(name.as_str(), want),
                (Err(invalid), Err(fragment)) => assert!(
                    invalid.description().contains(fragment),
                    "{input:?}: {invalid}"
                ),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn display_name_trims_before_counting() {
        let padded = format!("   {}   ", "y".repeat(120));
        assert_eq!(DisplayName::parse(&padded).unwrap().as_str().len(), 120);
    }

    proptest::proptest! {
        /// The identifier rules are the platform's: an identifier is accepted exactly when
        /// `accounts/{id}` is a name the platform parses (up to the configured maximum length),
        /// and every accepted identifier round-trips through the name.
        #[test]
        fn identifiers_agree_with_the_name_parser(
            raw in "[a-z0-9A-Z_ä-]{0,40}",
            any_text in proptest::prelude::any::<String>(),
            max in MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH..=MAX_ACCOUNT_ID_LENGTH,
        ) {
            for candidate in [raw.as_str(), any_text.as_str()] {
                let accepted = AccountId::parse(candidate, max);
                let name = tenantry_platform::names::account_name(candidate);
                let parsed = tenantry_platform::names::parse_account("name", &name);
                proptest::prop_assert_eq!(
                    accepted.is_ok(),
                    parsed.is_ok() && candidate.chars().count() <= max,
                    "{:?} (max {})", candidate, max
                );
                if let Ok(id) = accepted {
                    proptest::prop_assert_eq!(parsed.unwrap(), id.as_str());
                    proptest::prop_assert_eq!(
                        tenantry_platform::AccountId::parse(candidate),
                        Some(tenantry_platform::AccountId::from(id))
                    );
                }
            }
        }

        /// Refusals always say why: one or more problems, never an empty description.
        #[test]
        fn refusals_explain_themselves(raw in proptest::prelude::any::<String>()) {
            if let Err(invalid) = AccountId::parse(&raw, MAX_ACCOUNT_ID_LENGTH) {
                proptest::prop_assert!(!invalid.problems.is_empty());
            }
            if let Err(invalid) = DisplayName::parse(&raw) {
                proptest::prop_assert!(!invalid.description().is_empty());
            }
        }

        /// An accepted display name is trimmed, 1 to 120 characters, holds nothing the platform
        /// forbids in a line, and is accepted again unchanged.
        #[test]
        fn display_names_are_normalised_once(raw in "\\s{0,2}\\PC{0,130}\\s{0,2}") {
            if let Ok(name) = DisplayName::parse(&raw) {
                let text = name.as_str();
                proptest::prop_assert_eq!(text.trim(), text);
                proptest::prop_assert!((1..=MAX_DISPLAY_NAME_CHARS).contains(&text.chars().count()));
                proptest::prop_assert!(!text.chars().any(is_forbidden_in_line));
                proptest::prop_assert_eq!(DisplayName::parse(text).unwrap(), name.clone());
            }
        }
    }
}
