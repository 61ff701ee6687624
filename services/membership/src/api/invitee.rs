//! CheckInvitee: the internal RPC the invitation service calls before it stores an invitation —
//! whether a member already has the invitee's e-mail, and the account's OWNER capacity — so
//! CreateInvitation asks membership once instead of calling ListMembers and GetOwnerCapacity.
//! Answered from membership's database (the source of record), never from the local view.

use tenantry_platform::validation::Violations;
use tenantry_platform::{AccountId, ApiError, Principal};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use crate::domain::owners::OwnerCapacity;
use crate::domain::policy::{GatedGrant, policy_name};
use crate::domain::validate_email;
use crate::wire;

impl MembershipApi {
    /// Whether a member of the account has the e-mail, and its OWNER capacity (service
    /// identities only; an account membership does not know has no members and no OWNERs).
    pub(super) async fn check_invitee(
        &self,
        request: Request<pb::CheckInviteeRequest>,
    ) -> Result<pb::CheckInviteeResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let service = principal.service()?.name.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let account_id =
            violations.check_api("account", AccountId::from_name("account", &request.account));
        // The platform's address rule (the one CreateInvitation applies), in lookup form.
        let email = violations.check("email", validate_email(&request.email));
        // UNSPECIFIED: the caller does not ask about the policy.
        let role = match request.role {
            0 => Some(None),
            value => violations.check(
                "role",
                crate::domain::Role::from_wire(value)
                    .map(Some)
                    .ok_or_else(|| "not a known Role".to_string()),
            ),
        };
        let (Some(account_id), Some(email), Some(role)) = (account_id, email, role) else {
            return Err(violations.into_error());
        };
        // One statement: the OWNER counter row, and whether a member holds the address (the
        // directory's normalized e-mail).
        let facts = self.store.invitee(&account_id, &email).await?;
        let capacity = wire::owner_capacity_to_wire(OwnerCapacity::of(facts.owners));
        tracing::debug!(
            %service,
            account = %request.account,
            email_is_member = facts.email_is_member,
            owners = facts.owners,
            "check invitee"
        );
        // An invitation that would grant OWNER or ADMIN: gated by INVITATIONS or by its role.
        let gating = match role.filter(|role| GatedGrant::of_role(*role).is_some()) {
            Some(role) => {
                let managed_by = self
                    .accounts
                    .account(&account_id)
                    .await?
                    .and_then(|facts| facts.managed_by);
                self.store
                    .effective_policy(&account_id, managed_by.as_ref())
                    .await?
                    .gating_invitation(role)
                    .map(|(account, grant)| (policy_name(account), grant.as_str()))
            }
            None => None,
        };
        Ok(pb::CheckInviteeResponse {
            email_is_member: facts.email_is_member,
            owner_room: capacity.has_room,
            owners: capacity.owner_count,
            max_owners: capacity.max_owners,
            approval_required: gating.is_some(),
            gated_grant: gating
                .as_ref()
                .map(|(_, grant)| (*grant).to_string())
                .unwrap_or_default(),
            access_policy: gating.map(|(policy, _)| policy).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tenantry_platform::pagination::PageTokens;
    use tenantry_platform::testing::TempDatabase;
    use tenantry_platform::{ServiceIdentity, UserId, UserIdentity};
    use tonic::Code;

    use super::*;
    use crate::accounts::AccountDirectory;
    use crate::domain::{AccountFacts, AccountState, UserProfile};
    use crate::store::migrations::Migrator;
    use crate::{Config, Deps};

    /// `solo`, a standalone ACTIVE account; nothing else exists.
    #[derive(Debug)]
    struct OneAccount;

    #[async_trait::async_trait]
    impl AccountDirectory for OneAccount {
        async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
            Ok((account_id.as_str() == "solo").then(|| AccountFacts {
                account_id: account_id.clone(),
                display_name: "Solo".into(),
                partner: false,
                managed_by: None,
                state: AccountState::Active,
            }))
        }
    }

    async fn api() -> (MembershipApi, TempDatabase) {
        let temp = TempDatabase::new::<Migrator>("membership-invitee").await;
        let deps = Deps {
            database: temp.database.clone(),
            accounts: Arc::new(OneAccount),
            page_tokens: PageTokens::new(b"test"),
            outbox: tenantry_events::Outbox::new(),
            view: None,
            request_mail: std::sync::Arc::new(tokio::sync::Notify::new()),
        };
        (MembershipApi::new(Config::default(), deps), temp)
    }

    fn person(sub: &str, operator: bool) -> Principal {
        Principal::User(UserIdentity {
            sub: sub.into(),
            email: Some(format!("{sub}@example.com")),
            email_verified: true,
            given_name: None,
            family_name: None,
            operator,
        })
    }

    fn service() -> Principal {
        Principal::Service(ServiceIdentity {
            name: "invitation".into(),
        })
    }

    fn as_<T>(principal: &Principal, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(principal.clone());
        request
    }

    fn ask(account: &str, email: &str) -> pb::CheckInviteeRequest {
        pb::CheckInviteeRequest {
            account: account.into(),
            email: email.into(),
            role: 0,
        }
    }

    /// Makes `user` (directory e-mail `email`) a member of `solo` with `role`.
    async fn seed(api: &MembershipApi, user: &str, email: &str, role: pb::Role) {
        api.store
            .upsert_user(
                &UserId::trusted(user),
                &UserProfile {
                    email: email.into(),
                    ..UserProfile::default()
                },
            )
            .await
            .unwrap();
        let add = pb::AddMemberRequest {
            parent: "accounts/solo".into(),
            principal: Some(pb::add_member_request::Principal::User(format!(
                "users/{user}"
            ))),
            role: role as i32,
            ..Default::default()
        };
        api.add_member(as_(&person("op", true), add)).await.unwrap();
    }

    fn answer(response: &pb::CheckInviteeResponse) -> (bool, bool, i32, i32) {
        (
            response.email_is_member,
            response.owner_room,
            response.owners,
            response.max_owners,
        )
    }

    #[tokio::test]
    async fn members_e_mails_and_owner_capacity_in_one_answer() {
        let (api, _temp) = api().await;
        let check =
            |account: &str, email: &str| api.check_invitee(as_(&service(), ask(account, email)));
        assert_eq!(
            answer(&check("accounts/solo", "olga@example.com").await.unwrap()),
            (false, true, 0, 2)
        );
        seed(&api, "olga", "Olga@Example.com", pb::Role::Owner).await;
        // Case-insensitive and trimmed, like the invitation's own comparison.
        assert_eq!(
            answer(&check("accounts/solo", " OLGA@example.COM ").await.unwrap()),
            (true, true, 1, 2)
        );
        seed(&api, "otto", "otto@example.com", pb::Role::Owner).await;
        seed(&api, "erin", "erin@example.com", pb::Role::Employee).await;
        assert_eq!(
            answer(&check("accounts/solo", "erin@example.com").await.unwrap()),
            (true, false, 2, 2)
        );
        // A directory entry that is not a member of the account is not a member.
        api.store
            .upsert_user(
                &UserId::trusted("nina"),
                &UserProfile {
                    email: "nina@example.com".into(),
                    ..UserProfile::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            answer(&check("accounts/solo", "nina@example.com").await.unwrap()),
            (false, false, 2, 2)
        );
        // The same values GetOwnerCapacity returns.
        let capacity = api
            .get_owner_capacity(as_(
                &service(),
                pb::GetOwnerCapacityRequest {
                    account: "accounts/solo".into(),
                },
            ))
            .await
            .unwrap();
        assert_eq!(
            (capacity.owner_count, capacity.max_owners, capacity.has_room),
            (2, 2, false)
        );
        // An account membership does not know has no members and no OWNERs.
        assert_eq!(
            answer(&check("accounts/nowhere", "erin@example.com").await.unwrap()),
            (false, true, 0, 2)
        );
    }

    #[tokio::test]
    async fn only_services_may_ask() {
        let (api, _temp) = api().await;
        for who in [person("olga", false), person("op", true)] {
            let error = api
                .check_invitee(as_(&who, ask("accounts/solo", "olga@example.com")))
                .await
                .unwrap_err();
            assert_eq!(
                (error.code(), error.reason()),
                (Code::PermissionDenied, "INTERNAL_ONLY")
            );
        }
    }

    #[tokio::test]
    async fn bad_names_and_addresses_are_invalid_arguments() {
        let (api, _temp) = api().await;
        let fields = |account: &str, email: &str| {
            let request = as_(&service(), ask(account, email));
            async {
                let error = api.check_invitee(request).await.unwrap_err();
                assert_eq!(error.code(), Code::InvalidArgument);
                error
                    .field_violations()
                    .into_iter()
                    .map(|(field, _)| field)
                    .collect::<Vec<_>>()
            }
        };
        for bad in ["", "solo", "accounts/NOPE", "accounts/solo/members/x"] {
            assert_eq!(
                fields(bad, "olga@example.com").await,
                ["account"],
                "{bad:?}"
            );
        }
        for bad in ["", "   ", "olga", "olga@example", "olga\n@example.com"] {
            assert_eq!(fields("accounts/solo", bad).await, ["email"], "{bad:?}");
        }
        assert_eq!(fields("solo", "").await, ["account", "email"]);
    }
}
