//! Access policies, free of I/O: what an account's OWNERs may put behind approval, how many
//! people approve, how long a request waits and how long time-bound access lasts; the policy in
//! force for an account (its own merged with its managing partner's, field by field the
//! stricter, so a customer can tighten but never loosen what its partner set); and which
//! grant a call makes.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use tenantry_platform::AccountId;

use super::expiry::{max_access, min_access};
use super::{MembershipError, Role};

/// Fewest approvals a policy may require (the requester's and one more: four eyes).
pub const MIN_APPROVALS: i32 = 2;
/// Most approvals a policy may require.
pub const MAX_APPROVALS: i32 = 5;

/// How long a request waits when the policy does not say.
pub fn default_request_lifetime() -> Duration {
    Duration::days(7)
}

/// The shortest request lifetime a policy may set.
pub fn min_request_lifetime() -> Duration {
    Duration::hours(1)
}

/// The longest request lifetime a policy may set.
pub fn max_request_lifetime() -> Duration {
    Duration::days(90)
}

/// A kind of grant a policy may put behind approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GatedGrant {
    /// Making someone OWNER.
    OwnerRole,
    /// Making someone ADMIN.
    AdminRole,
    /// AddMyself.
    AddMyself,
    /// Invitations with the role OWNER or ADMIN.
    Invitations,
    /// ExtendMemberAccess.
    Extensions,
}

impl GatedGrant {
    /// Every kind, in wire order.
    pub const ALL: [GatedGrant; 5] = [
        GatedGrant::OwnerRole,
        GatedGrant::AdminRole,
        GatedGrant::AddMyself,
        GatedGrant::Invitations,
        GatedGrant::Extensions,
    ];

    /// The stored spelling (also the wire name without its prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            GatedGrant::OwnerRole => "OWNER_ROLE",
            GatedGrant::AdminRole => "ADMIN_ROLE",
            GatedGrant::AddMyself => "ADD_MYSELF",
            GatedGrant::Invitations => "INVITATIONS",
            GatedGrant::Extensions => "EXTENSIONS",
        }
    }

    /// The kind spelled `text`.
    pub fn parse(text: &str) -> Option<GatedGrant> {
        GatedGrant::ALL
            .into_iter()
            .find(|grant| grant.as_str() == text)
    }

    /// The grant of `role` by AddMember or UpdateMember; `None` for a role never gated.
    pub fn of_role(role: Role) -> Option<GatedGrant> {
        match role {
            Role::Owner => Some(GatedGrant::OwnerRole),
            Role::Admin => Some(GatedGrant::AdminRole),
            Role::Employee => None,
        }
    }
}

/// What happens when fewer people may approve than required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShortOfApprovers {
    /// The request is refused.
    #[default]
    Refuse,
    /// The managing partner's OWNERs may approve too.
    EscalateToPartnerOwners,
}

impl ShortOfApprovers {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ShortOfApprovers::Refuse => "REFUSE",
            ShortOfApprovers::EscalateToPartnerOwners => "ESCALATE_TO_PARTNER_OWNERS",
        }
    }

    /// The value spelled `text`.
    pub fn parse(text: &str) -> Option<ShortOfApprovers> {
        [
            ShortOfApprovers::Refuse,
            ShortOfApprovers::EscalateToPartnerOwners,
        ]
        .into_iter()
        .find(|value| value.as_str() == text)
    }
}

/// An access policy's rules. `Default` is a policy never set: nothing gated, no durations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The grants that need approval.
    pub gated: BTreeSet<GatedGrant>,
    /// Approvals needed (0: not set, [`MIN_APPROVALS`]).
    pub required_approvals: i32,
    /// How long a request waits; `None`: not set.
    pub request_lifetime: Option<Duration>,
    /// What happens short of approvers; `None`: not set (refuse).
    pub short_of_approvers: Option<ShortOfApprovers>,
    /// The length of access asked without one.
    pub default_access_duration: Option<Duration>,
    /// The longest access.
    pub max_access_duration: Option<Duration>,
    /// A duration must be asked (or defaulted).
    pub access_duration_required: bool,
}

/// The field names [`AccessPolicy::validate`] reports under (relative to the policy).
impl AccessPolicy {
    /// Checks the values a policy may hold; Err is (field, description) of the first wrong one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.required_approvals != 0
            && !(MIN_APPROVALS..=MAX_APPROVALS).contains(&self.required_approvals)
        {
            return Err((
                "required_approvals",
                format!("must be between {MIN_APPROVALS} and {MAX_APPROVALS} (0: {MIN_APPROVALS})"),
            ));
        }
        if let Some(lifetime) = self.request_lifetime
            && (lifetime < min_request_lifetime() || lifetime > max_request_lifetime())
        {
            return Err((
                "request_lifetime",
                "must be between 1 hour and 90 days".to_string(),
            ));
        }
        let in_range = |duration: Duration| duration >= min_access() && duration <= max_access();
        let range = format!(
            "must be between 1 minute and {} days",
            max_access().num_days()
        );
        if self.default_access_duration.is_some_and(|d| !in_range(d)) {
            return Err(("default_access_duration", range));
        }
        if self.max_access_duration.is_some_and(|d| !in_range(d)) {
            return Err(("max_access_duration", range));
        }
        if let (Some(default), Some(max)) = (self.default_access_duration, self.max_access_duration)
            && default > max
        {
            return Err((
                "default_access_duration",
                "must not be longer than max_access_duration".to_string(),
            ));
        }
        Ok(())
    }

    /// Whether `grant` needs approval.
    pub fn gates(&self, grant: GatedGrant) -> bool {
        self.gated.contains(&grant)
    }

    /// Whether the policy limits time-bound access of a member with `role`: a maximum or
    /// default duration, gated extensions or Add Myself, or the role itself gated (then an
    /// accepted invitation does not make such access permanent).
    pub fn bounds_access(&self, role: Role) -> bool {
        self.max_access_duration.is_some()
            || self.default_access_duration.is_some()
            || self.gates(GatedGrant::Extensions)
            || self.gates(GatedGrant::AddMyself)
            || GatedGrant::of_role(role).is_some_and(|grant| self.gates(grant))
    }

    /// Approvals a request needs, the requester's included.
    pub fn approvals(&self) -> i32 {
        self.required_approvals.max(MIN_APPROVALS)
    }

    /// How long a request waits for its approvals.
    pub fn request_lifetime(&self) -> Duration {
        self.request_lifetime
            .unwrap_or_else(default_request_lifetime)
    }

    /// Whether a request short of approvers goes to the managing partner's OWNERs.
    pub fn escalates(&self) -> bool {
        self.short_of_approvers == Some(ShortOfApprovers::EscalateToPartnerOwners)
    }

    /// Field by field the stricter of `self` and `other`: more gated grants, more approvals, a
    /// shorter request lifetime, REFUSE over escalation, shorter durations (the default no
    /// longer than the maximum), a duration required if either requires one.
    pub fn stricter(&self, other: &AccessPolicy) -> AccessPolicy {
        fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let max_access_duration = shorter(self.max_access_duration, other.max_access_duration);
        let default_access_duration =
            shorter(self.default_access_duration, other.default_access_duration)
                .map(|default| max_access_duration.map_or(default, |max| default.min(max)));
        let short_of_approvers = match (self.short_of_approvers, other.short_of_approvers) {
            (Some(ShortOfApprovers::Refuse), _) | (_, Some(ShortOfApprovers::Refuse)) => {
                Some(ShortOfApprovers::Refuse)
            }
            (a, b) => a.or(b),
        };
        AccessPolicy {
            gated: self.gated.union(&other.gated).copied().collect(),
            required_approvals: self.required_approvals.max(other.required_approvals),
            request_lifetime: shorter(self.request_lifetime, other.request_lifetime),
            short_of_approvers,
            default_access_duration,
            max_access_duration,
            access_duration_required: self.access_duration_required
                || other.access_duration_required,
        }
    }

    /// How long time-bound access asked for `asked` lasts under this policy (`None`: without
    /// end). Err is the description of the INVALID_ARGUMENT on the duration field.
    pub fn access_duration(&self, asked: Option<Duration>) -> Result<Option<Duration>, String> {
        match asked {
            Some(duration) => match self.max_access_duration {
                Some(max) if duration > max => Err(format!(
                    "the access policy allows at most {}",
                    describe(max)
                )),
                _ => Ok(Some(duration)),
            },
            None => match self.default_access_duration.or(self.max_access_duration) {
                Some(duration) => Ok(Some(duration)),
                None if self.access_duration_required => {
                    Err("the access policy requires a duration".to_string())
                }
                None => Ok(None),
            },
        }
    }

    /// Whether an end at `expire_time` is within the policy's maximum from `now`. Err is the
    /// description of the INVALID_ARGUMENT.
    pub fn check_end(&self, expire_time: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
        match self.max_access_duration {
            Some(max) if expire_time > now + max => Err(format!(
                "the access policy allows access at most {} from now",
                describe(max)
            )),
            _ => Ok(()),
        }
    }
}

/// A duration as people read it in an error.
fn describe(duration: Duration) -> String {
    let (count, unit) = if duration.num_seconds() % 86_400 == 0 {
        (duration.num_days(), "day")
    } else if duration.num_seconds() % 3_600 == 0 {
        (duration.num_hours(), "hour")
    } else {
        (duration.num_minutes(), "minute")
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

/// An account's own policy as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    /// The account.
    pub account_id: AccountId,
    /// The rules.
    pub policy: AccessPolicy,
    /// Starts at 1; the etag.
    pub version: i64,
    /// When it was last set.
    pub update_time: DateTime<Utc>,
    /// `users/{sub}` of who set it.
    pub update_by: String,
}

/// The policy in force for an account, and the policies it comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// The account's own policy, if it was ever set.
    pub own: Option<StoredPolicy>,
    /// Its managing partner's, if it is a managed customer whose partner set one.
    pub partner: Option<StoredPolicy>,
    /// The two merged ([`AccessPolicy::stricter`]).
    pub rules: AccessPolicy,
}

impl EffectivePolicy {
    /// The policy in force given the account's own and its partner's.
    pub fn of(own: Option<StoredPolicy>, partner: Option<StoredPolicy>) -> Self {
        let none = AccessPolicy::default();
        let rules = own
            .as_ref()
            .map_or(&none, |own| &own.policy)
            .stricter(partner.as_ref().map_or(&none, |partner| &partner.policy));
        Self {
            own,
            partner,
            rules,
        }
    }

    /// The account whose policy puts `grant` behind approval (the partner's first: it set the
    /// rule the customer could not loosen), `None` if the grant is not gated.
    pub fn gating(&self, grant: GatedGrant) -> Option<&AccountId> {
        [&self.partner, &self.own]
            .into_iter()
            .flatten()
            .find(|stored| stored.policy.gates(grant))
            .map(|stored| &stored.account_id)
    }

    /// The account whose policy puts an invitation with `role` behind approval: INVITATIONS
    /// gates OWNER and ADMIN invitations, and a gated role gates its invitations too (else the
    /// role would be granted by invitation without approval).
    pub fn gating_invitation(&self, role: Role) -> Option<(&AccountId, GatedGrant)> {
        let by_role = GatedGrant::of_role(role)?;
        self.gating(GatedGrant::Invitations)
            .map(|account| (account, GatedGrant::Invitations))
            .or_else(|| self.gating(by_role).map(|account| (account, by_role)))
    }

    /// APPROVAL_REQUIRED if `grant` is gated.
    pub fn require_ungated(&self, grant: GatedGrant) -> Result<(), MembershipError> {
        match self.gating(grant) {
            Some(account_id) => Err(MembershipError::ApprovalRequired {
                policy: policy_name(account_id),
                grant,
            }),
            None => Ok(()),
        }
    }
}

/// `accounts/{account_id}/accessPolicy`.
pub fn policy_name(account_id: &AccountId) -> String {
    format!("accounts/{account_id}/accessPolicy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(account: &str, policy: AccessPolicy) -> StoredPolicy {
        StoredPolicy {
            account_id: AccountId::trusted(account),
            policy,
            version: 1,
            update_time: Utc::now(),
            update_by: "users/o".into(),
        }
    }

    #[test]
    fn a_customer_tightens_but_never_loosens_its_partners_policy() {
        let partner = AccessPolicy {
            gated: [GatedGrant::OwnerRole, GatedGrant::AddMyself].into(),
            required_approvals: 3,
            request_lifetime: Some(Duration::days(10)),
            short_of_approvers: Some(ShortOfApprovers::EscalateToPartnerOwners),
            default_access_duration: Some(Duration::hours(8)),
            max_access_duration: Some(Duration::days(30)),
            access_duration_required: false,
        };
        let customer = AccessPolicy {
            gated: [GatedGrant::AdminRole].into(),
            required_approvals: 2,
            request_lifetime: Some(Duration::days(2)),
            short_of_approvers: Some(ShortOfApprovers::Refuse),
            default_access_duration: Some(Duration::days(60)),
            max_access_duration: Some(Duration::days(1)),
            access_duration_required: true,
        };
        let merged =
            EffectivePolicy::of(Some(stored("acme", customer)), Some(stored("p", partner)));
        let rules = &merged.rules;
        assert_eq!(
            rules.gated,
            [
                GatedGrant::OwnerRole,
                GatedGrant::AdminRole,
                GatedGrant::AddMyself
            ]
            .into()
        );
        assert_eq!(rules.approvals(), 3);
        assert_eq!(rules.request_lifetime(), Duration::days(2));
        assert!(!rules.escalates());
        assert_eq!(rules.max_access_duration, Some(Duration::days(1)));
        // The shorter default, no longer than the maximum in force.
        assert_eq!(rules.default_access_duration, Some(Duration::hours(8)));
        assert!(rules.access_duration_required);
        // The partner's policy names a grant both gate; the customer's the one only it gates.
        assert_eq!(
            merged.gating(GatedGrant::OwnerRole),
            Some(&AccountId::trusted("p"))
        );
        assert_eq!(
            merged.gating(GatedGrant::AdminRole),
            Some(&AccountId::trusted("acme"))
        );
        assert_eq!(merged.gating(GatedGrant::Invitations), None);
    }

    #[test]
    fn no_policy_gates_nothing_and_grants_without_end() {
        let none = EffectivePolicy::of(None, None);
        for grant in GatedGrant::ALL {
            assert!(none.require_ungated(grant).is_ok());
        }
        assert_eq!(none.rules.access_duration(None), Ok(None));
        assert_eq!(
            none.rules.access_duration(Some(Duration::days(700))),
            Ok(Some(Duration::days(700)))
        );
        assert_eq!(none.rules.approvals(), MIN_APPROVALS);
        assert_eq!(none.rules.request_lifetime(), Duration::days(7));
    }

    #[test]
    fn durations_default_cap_and_may_be_required() {
        let capped = AccessPolicy {
            max_access_duration: Some(Duration::days(1)),
            ..Default::default()
        };
        assert_eq!(capped.access_duration(None), Ok(Some(Duration::days(1))));
        assert!(capped.access_duration(Some(Duration::days(2))).is_err());
        let defaulted = AccessPolicy {
            default_access_duration: Some(Duration::hours(4)),
            access_duration_required: true,
            ..Default::default()
        };
        assert_eq!(
            defaulted.access_duration(None),
            Ok(Some(Duration::hours(4)))
        );
        let required = AccessPolicy {
            access_duration_required: true,
            ..Default::default()
        };
        assert!(required.access_duration(None).is_err());
        assert_eq!(
            required.access_duration(Some(Duration::hours(1))),
            Ok(Some(Duration::hours(1)))
        );
        let now = Utc::now();
        assert!(capped.check_end(now + Duration::hours(23), now).is_ok());
        assert!(capped.check_end(now + Duration::hours(25), now).is_err());
    }

    #[test]
    fn values_out_of_range_are_named() {
        let field = |policy: AccessPolicy| policy.validate().unwrap_err().0;
        assert_eq!(
            field(AccessPolicy {
                required_approvals: 6,
                ..Default::default()
            }),
            "required_approvals"
        );
        assert_eq!(
            field(AccessPolicy {
                required_approvals: 1,
                ..Default::default()
            }),
            "required_approvals"
        );
        assert_eq!(
            field(AccessPolicy {
                request_lifetime: Some(Duration::days(91)),
                ..Default::default()
            }),
            "request_lifetime"
        );
        assert_eq!(
            field(AccessPolicy {
                default_access_duration: Some(Duration::days(3)),
                max_access_duration: Some(Duration::days(2)),
                ..Default::default()
            }),
            "default_access_duration"
        );
        assert_eq!(
            field(AccessPolicy {
                max_access_duration: Some(Duration::seconds(30)),
                ..Default::default()
            }),
            "max_access_duration"
        );
        assert!(AccessPolicy::default().validate().is_ok());
    }
}
