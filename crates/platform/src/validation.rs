//! Validation that reports every offending field of a request at once: handlers parse each
//! field through [`Violations`], then call [`Violations::finish`] before doing anything else.

use std::fmt;

use crate::error::ApiError;

/// The field violations of one request, gathered before any is reported.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    /// No violation yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong, and why.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// The value of an `Ok`; for an `Err`, records its text against `field` and returns `None`.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result
            .map_err(|error| self.add(field, error.to_string()))
            .ok()
    }

    /// The value of an `Ok`; for an INVALID_ARGUMENT from a platform parser (which names its
    /// own fields), records its field violations. Any other error is kept as one violation of
    /// `field` with the error's message.
    pub fn check_api<T>(&mut self, field: &str, result: Result<T, ApiError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                let named = error.field_violations();
                if named.is_empty() {
                    self.add(field, error.message());
                } else {
                    self.0.extend(named);
                }
                None
            }
        }
    }

    /// Whether no field was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when no field was wrong, else INVALID_ARGUMENT naming every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_fields(self.0))
        }
    }

    /// The INVALID_ARGUMENT for the violations so far (for a request whose required values are
    /// missing, when the caller already knows some field failed).
    pub fn into_error(self) -> ApiError {
        ApiError::invalid_fields(self.0)
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::names::parse_account;

    #[test]
    fn reports_every_field_at_once() {
        let mut violations = Violations::new();
        let good: Option<u8> = violations.check("a", "7".parse::<u8>());
        let bad: Option<u8> = violations.check("b", "x".parse::<u8>());
        let account = violations.check_api("parent", parse_account("parent", "nope"));
        violations.add("c", "too long");
        assert_eq!((good, bad, account), (Some(7), None, None));
        let error = violations.finish().unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        let fields: Vec<_> = error
            .field_violations()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(fields, ["b", "parent", "c"]);
        assert!(Violations::new().finish().is_ok());
    }
}
