//! ListMembers and ListMyAccounts.

use futures::StreamExt;
use tenantry_platform::{AccountId, ApiError, Principal, UserId};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use crate::domain::{AccountFacts, Member, Permission, members};
use crate::wire;

/// How many account lookups ListMyAccounts runs at once.
const ACCOUNT_LOOKUP_CONCURRENCY: usize = 16;

impl MembershipApi {
    pub(super) async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<pb::ListMembersResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let account_id = AccountId::from_name("parent", &request.parent)?;
        let filter = wire::member_filter(&request.roles, &request.email)?;
        let scope = filter.scope(&account_id);
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        access.existing(&account_id)?;
        let mut members = self
            .store
            .list_members(
                &account_id,
                &filter.roles,
                filter.email.as_deref(),
                page.after.as_deref(),
                page.size + 1,
            )
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut members, |member| {
                member.user_id.to_string()
            });
        Ok(pb::ListMembersResponse {
            members: members.iter().map(wire::member_to_wire).collect(),
            next_page_token,
        })
    }

    pub(super) async fn list_my_accounts(
        &self,
        request: Request<pb::ListMyAccountsRequest>,
    ) -> Result<pb::ListMyAccountsResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        self.caller(&principal).await?;
        let request = request.into_inner();
        let scope = format!("ListMyAccounts|{}", user.sub);
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let user_id = UserId::trusted(user.sub.clone());
        let mut memberships = self
            .store
            .memberships_of(&user_id, page.after.as_deref(), page.size + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut memberships, |member| {
                member.account_id.to_string()
            });
        // A page may hold fewer rows than asked for: DELETED accounts are left out after the
        // keyset read (facts from the directory, mostly replica hits; `account.deleted` drops
        // the members of deleted accounts, so this only covers the moments before that).
        let facts = self.facts_of(&memberships).await;
        let mut accounts = Vec::with_capacity(memberships.len());
        for (member, facts) in memberships.iter().zip(facts) {
            if let Some(facts) = facts?
                && members::listed(&facts)
            {
                accounts.push(wire::membership_to_wire(member, &facts));
            }
        }
        Ok(pb::ListMyAccountsResponse {
            accounts,
            next_page_token,
        })
    }

    /// The facts of the accounts of `memberships`, in order: from the local view, the others
    /// looked up a few at a time.
    async fn facts_of(
        &self,
        memberships: &[Member],
    ) -> Vec<Result<Option<AccountFacts>, ApiError>> {
        let account_ids: Vec<AccountId> = memberships
            .iter()
            .map(|member| member.account_id.clone())
            .collect();
        futures::stream::iter(account_ids)
            .map(|account_id| async move { self.account_facts(&account_id).await })
            .buffered(ACCOUNT_LOOKUP_CONCURRENCY)
            .collect()
            .await
    }

    /// One account's facts: from the local view if it keeps them, otherwise from the directory
    /// (and then kept).
    async fn account_facts(
        &self,
        account_id: &AccountId,
    ) -> Result<Option<AccountFacts>, ApiError> {
        let Some(view) = &self.view else {
            return self.accounts.account(account_id).await;
        };
        if let Some(facts) = view.account(account_id) {
            return Ok(Some(facts));
        }
        let ticket = view.account_ticket(account_id);
        let facts = self.accounts.account(account_id).await?;
        if let (Some(ticket), Some(facts)) = (ticket, &facts) {
            view.keep_account(facts, ticket);
        }
        Ok(facts)
    }
}
