//! The rules of SendMessage, without I/O: which fields a request must carry, who may send
//! (an ACTIVE partner), and which recipient sets are allowed (ACTIVE customers of the sender,
//! or every ACTIVE customer). The handler reads the registry and hands the facts in here.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tenantry_platform::idempotency::RequestKey;
use tenantry_platform::names::parse_account;
use tenantry_platform::{AccountId, ApiError, Role, Violations};

use super::{
    MAX_RECIPIENTS, NewMessage, NotificationError, ReadPolicy, validate_body, validate_expiry,
    validate_title,
};

/// The method recorded with a SendMessage's `request_id`.
pub const SEND_MESSAGE: &str = "SendMessage";

/// Why a listed recipient is refused (whether the account exists or not).
pub const NOT_A_MANAGED_CUSTOMER: &str =
    "must be a customer `accounts/{customer_id}` managed by parent";

pub use tenantry_platform::AccountState;

/// What this service needs to know about an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFacts {
    /// Display name.
    pub display_name: String,
    /// Whether it is a partner.
    pub partner: bool,
    /// The managing partner's id, if managed.
    pub managed_by: Option<String>,
    /// Its state.
    pub state: AccountState,
}

/// The fields of a SendMessage, read off the wire but not checked yet.
#[derive(Clone, Debug)]
pub struct SendInput<'a> {
    /// The title as given.
    pub title: &'a str,
    /// The body as given.
    pub body: &'a str,
    /// The read policy, or why the wire value is refused.
    pub read_policy: Result<ReadPolicy, String>,
    /// The role filter, or why the wire values are refused.
    pub roles: Result<Vec<Role>, String>,
    /// The requested expiry.
    pub expire_time: Option<DateTime<Utc>>,
    /// The recipient account names as given.
    pub recipients: &'a [String],
    /// Whether every ACTIVE customer is asked for.
    pub all_customers: bool,
}

/// Who a checked SendMessage is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Every ACTIVE customer of the sender.
    AllCustomers,
    /// The listed accounts, deduplicated, with their index in the request.
    Listed(Vec<(usize, AccountId)>),
}

/// A SendMessage whose fields passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendDraft {
    /// Trimmed title.
    pub title: String,
    /// Body as given.
    pub body: String,
    /// Policy.
    pub read_policy: ReadPolicy,
    /// Role filter, sorted and deduplicated.
    pub roles: Vec<Role>,
    /// Optional expiry, in the future.
    pub expire_time: Option<DateTime<Utc>>,
    /// Who it is for.
    pub recipients: Recipients,
}

/// Checks every field of a SendMessage at once: INVALID_ARGUMENT naming each offending field
/// (`title`, `body`, `read_policy`, `roles`, `expire_time`, `recipients` or `recipients[i]`).
pub fn check_send(input: SendInput<'_>, now: DateTime<Utc>) -> Result<SendDraft, ApiError> {
    let mut violations = Violations::new();
    let title = violations.check("title", validate_title(input.title));
    let body = violations.check("body", validate_body(input.body));
    let read_policy = violations.check("read_policy", input.read_policy);
    let roles = violations.check("roles", input.roles);
    let expire_time = violations.check("expire_time", validate_expiry(input.expire_time, now));
    let listed = requested_recipients(&mut violations, input.recipients, input.all_customers);
    match (title, body, read_policy, roles, expire_time) {
        (Some(title), Some(body), Some(read_policy), Some(roles), Some(expire_time))
            if violations.is_empty() =>
        {
            Ok(SendDraft {
                title,
                body,
                read_policy,
                roles,
                expire_time,
                recipients: if input.all_customers {
                    Recipients::AllCustomers
                } else {
                    Recipients::Listed(listed)
                },
            })
        }
        _ => Err(violations.into_error()),
    }
}

/// Exactly one of a list (1 to [`MAX_RECIPIENTS`] account names) or `all_customers`; the list
/// deduplicated, each entry with its index in the request.
fn requested_recipients(
    violations: &mut Violations,
    recipients: &[String],
    all_customers: bool,
) -> Vec<(usize, AccountId)> {
    let mut requested = Vec::new();
    let given_list = !recipients.is_empty();
    if all_customers == given_list {
        violations.add(
            "recipients",
            "give exactly one of recipients (1 to 1000 accounts) or all_customers",
        );
    } else if recipients.len() > MAX_RECIPIENTS {
        violations.add("recipients", format!("at most {MAX_RECIPIENTS} accounts"));
    } else {
        let mut seen = HashSet::new();
        for (index, name) in recipients.iter().enumerate() {
            let field = format!("recipients[{index}]");
            match parse_account(&field, name) {
                Ok(id) => {
                    if seen.insert(id.clone()) {
                        requested.push((index, AccountId::trusted(id)));
                    }
                }
                Err(_) => violations.add(field, NOT_A_MANAGED_CUSTOMER),
            }
        }
    }
    requested
}

impl SendDraft {
    /// The idempotency key of this request under `request_id`, from `caller` as `partner_id`.
    pub fn request_key(
        &self,
        request_id: String,
        caller: String,
        partner_id: &AccountId,
    ) -> RequestKey {
        let roles: Vec<&str> = self.roles.iter().map(|role| role.as_str()).collect();
        let (recipients, all) = match &self.recipients {
            Recipients::AllCustomers => (Vec::new(), "all"),
            Recipients::Listed(listed) => (listed.iter().map(|(_, id)| id.as_str()).collect(), ""),
        };
        RequestKey::new(
            request_id,
            caller,
            SEND_MESSAGE,
            &[
                partner_id.as_str(),
                &self.title,
                &self.body,
                self.read_policy.as_str(),
                &recipients.join(","),
                all,
                &roles.join(","),
                &self
                    .expire_time
                    .map(|time| time.to_rfc3339())
                    .unwrap_or_default(),
            ],
        )
    }

    /// The message to store, sent by `sender` from `partner_id` to `recipients`.
    pub fn into_message(
        self,
        partner_id: AccountId,
        partner_display_name: String,
        sender: String,
        recipients: Vec<AccountId>,
    ) -> NewMessage {
        NewMessage {
            partner_id,
            partner_display_name,
            sender,
            title: self.title,
            body: self.body,
            read_policy: self.read_policy,
            all_customers: self.recipients == Recipients::AllCustomers,
            recipients,
            roles: self.roles,
            expire_time: self.expire_time,
        }
    }
}

/// The sender's display name, if `partner` (what the registry knows of `partner_id`) is an
/// ACTIVE partner; NotActivePartner otherwise.
pub fn sending_partner(
    partner_id: &AccountId,
    partner: Option<AccountFacts>,
) -> Result<String, NotificationError> {
    match partner {
        Some(facts) if facts.partner && facts.state == AccountState::Active => {
            Ok(facts.display_name)
        }
        _ => Err(NotificationError::NotActivePartner(
            partner_id.as_str().to_string(),
        )),
    }
}

/// `all_customers`: every ACTIVE customer, by id; NoActiveCustomers if there is none.
pub fn all_active_customers(
    partner_id: &AccountId,
    customers: &HashMap<AccountId, AccountState>,
) -> Result<Vec<AccountId>, NotificationError> {
    let mut active: Vec<AccountId> = customers
        .iter()
        .filter(|(_, state)| **state == AccountState::Active)
        .map(|(id, _)| id.clone())
        .collect();
    active.sort();
    if active.is_empty() {
        return Err(NotificationError::NoActiveCustomers(
            partner_id.as_str().to_string(),
        ));
    }
    Ok(active)
}

/// Every requested recipient must be an ACTIVE customer of the partner: others are
/// INVALID_ARGUMENT naming `recipients[i]` (same answer whether the account exists or not);
/// customers that are not ACTIVE (disabled, deleted) are FAILED_PRECONDITION. `accounts` holds
/// what the registry said of the requested accounts (one batched call); an account it does not
/// hold does not exist.
pub fn listed_recipients(
    partner_id: &AccountId,
    requested: &[(usize, AccountId)],
    accounts: &HashMap<AccountId, AccountFacts>,
) -> Result<Vec<AccountId>, NotificationError> {
    let mut invalid = Vec::new();
    let mut not_active = Vec::new();
    for (index, id) in requested {
        match accounts.get(id) {
            Some(facts) if facts.managed_by.as_deref() == Some(partner_id.as_str()) => {
                if facts.state != AccountState::Active {
                    not_active.push(id.as_str().to_string());
                }
            }
            _ => invalid.push(*index),
        }
    }
    if !invalid.is_empty() {
        return Err(NotificationError::InvalidRecipients(invalid));
    }
    if !not_active.is_empty() {
        return Err(NotificationError::RecipientsNotActive(not_active));
    }
    Ok(requested.iter().map(|(_, id)| id.clone()).collect())
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use tenantry_platform::idempotency::fingerprint;

    use super::*;

    fn input<'a>(recipients: &'a [String], all_customers: bool) -> SendInput<'a> {
        SendInput {
            title: " Maintenance ",
            body: "Tonight.",
            read_policy: Ok(ReadPolicy::AllMustRead),
            roles: Ok(vec![Role::Owner]),
            expire_time: None,
            recipients,
            all_customers,
        }
    }

    fn id(text: &str) -> AccountId {
        AccountId::trusted(text)
    }

    fn fields(error: &ApiError) -> Vec<String> {
        error
            .field_violations()
            .into_iter()
            .map(|(field, _)| field)
            .collect()
    }

    #[test]
    fn every_offending_field_is_named_in_request_order() {
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
        let listed = vec![
            "accounts/c01".to_string(),
            "nope".to_string(),
            "accounts/c01".to_string(),
        ];
        let mut bad = input(&listed, false);
        bad.title = "";
        bad.read_policy = Err("required".into());
        bad.roles = Err("each role".into());
        bad.expire_time = Some(now - Duration::seconds(1));
        let error = check_send(bad, now).unwrap_err();
        assert_eq!(
            fields(&error),
            [
                "title",
                "read_policy",
                "roles",
                "expire_time",
                "recipients[1]"
            ]
        );
        assert!(error.message().contains(NOT_A_MANAGED_CUSTOMER));

        for (recipients, all) in [(vec![], false), (vec!["accounts/c01".to_string()], true)] {
            let error = check_send(input(&recipients, all), now).unwrap_err();
            assert_eq!(fields(&error), ["recipients"]);
        }
        let too_many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("accounts/c{i}x"))
            .collect();
        let error = check_send(input(&too_many, false), now).unwrap_err();
        assert!(
            error.message().contains("at most 1000 accounts"),
            "{}",
            error.message()
        );

        let draft = check_send(input(&listed[..1], false), now).unwrap();
        assert_eq!(draft.title, "Maintenance");
        assert_eq!(draft.recipients, Recipients::Listed(vec![(0, id("c01"))]));
        let all = check_send(input(&[], true), now).unwrap();
        assert_eq!(all.recipients, Recipients::AllCustomers);
    }

    #[test]
    fn the_fingerprint_covers_the_checked_request() {
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
        let listed = vec!["accounts/c02".to_string(), "accounts/c01".to_string()];
        let draft = check_send(input(&listed, false), now).unwrap();
        let key = draft.request_key("r".into(), "users/u".into(), &id("acme"));
        assert_eq!(key.method, SEND_MESSAGE);
        // The fields and their order are stored with every request id: they must not change.
        assert_eq!(
            key.fingerprint,
            fingerprint(&[
                "SendMessage",
                "acme",
                "Maintenance",
                "Tonight.",
                "ALL_MUST_READ",
                "c02,c01",
                "",
                "OWNER",
                "",
            ])
        );
        let all = check_send(input(&[], true), now).unwrap();
        let key = all.request_key("r".into(), "users/u".into(), &id("acme"));
        assert_eq!(
            key.fingerprint,
            fingerprint(&[
                "SendMessage",
                "acme",
                "Maintenance",
                "Tonight.",
                "ALL_MUST_READ",
                "",
                "all",
                "OWNER",
                "",
            ])
        );
    }

    #[test]
    fn recipients_must_be_active_customers_of_the_sender() {
        let facts = |partner: bool, state, managed_by: Option<&str>| AccountFacts {
            display_name: "Acme".into(),
            partner,
            managed_by: managed_by.map(str::to_string),
            state,
        };
        let acme = id("acme");
        assert_eq!(
            sending_partner(&acme, Some(facts(true, AccountState::Active, None))).unwrap(),
            "Acme"
        );
        for partner in [
            None,
            Some(facts(false, AccountState::Active, None)),
            Some(facts(true, AccountState::Disabled, None)),
        ] {
            assert!(matches!(
                sending_partner(&acme, partner),
                Err(NotificationError::NotActivePartner(p)) if p == "acme"
            ));
        }

        let customers = HashMap::from([
            (id("c01"), AccountState::Active),
            (id("c02"), AccountState::Disabled),
            (id("c00"), AccountState::Active),
        ]);
        assert_eq!(
            all_active_customers(&acme, &customers).unwrap(),
            [id("c00"), id("c01")]
        );
        assert!(matches!(
            all_active_customers(&acme, &HashMap::new()),
            Err(NotificationError::NoActiveCustomers(_))
        ));

        let accounts = HashMap::from([
            (id("c01"), facts(false, AccountState::Active, Some("acme"))),
            (
                id("c02"),
                facts(false, AccountState::Disabled, Some("acme")),
            ),
            (
                id("gone"),
                facts(false, AccountState::Deleted, Some("acme")),
            ),
            (
                id("other"),
                facts(false, AccountState::Active, Some("beta")),
            ),
        ]);
        // Another partner's customer and an unknown account are refused alike.
        let requested = vec![
            (0, id("c01")),
            (2, id("gone")),
            (3, id("other")),
            (4, id("unknown")),
        ];
        assert!(matches!(
            listed_recipients(&acme, &requested, &accounts),
            Err(NotificationError::InvalidRecipients(indexes)) if indexes == [3, 4]
        ));
        let requested = vec![(0, id("c01")), (1, id("c02")), (2, id("gone"))];
        assert!(matches!(
            listed_recipients(&acme, &requested, &accounts),
            Err(NotificationError::RecipientsNotActive(ids)) if ids == ["c02", "gone"]
        ));
        assert_eq!(
            listed_recipients(&acme, &requested[..1], &accounts).unwrap(),
            [id("c01")]
        );
    }
}
