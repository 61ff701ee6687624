//! Membership's own local view: account facts and members' roles kept in memory under the
//! rules of [`tenantry_platform::view`], so `Authorize` answers an allowed caller without a
//! database round trip. Only allows are served from it: a refusal is always checked against the
//! database (a grant made a moment ago on another replica is visible at once), and so is every
//! call that asks to bypass the view (a peer filling its own view must never fill from this one).

use tenantry_platform::AccountId;
use tenantry_platform::view::{LocalView, Ticket, ViewCache};

use crate::domain::access::Access;
use crate::domain::{AccountFacts, Caller, Role};

/// Tickets taken before the database is read, for keeping what it answers.
#[derive(Debug, Default)]
pub(super) struct Tickets {
    account: Option<Ticket>,
    role: Option<Ticket>,
    partner_role: Option<Ticket>,
}

/// Account facts and roles kept in memory.
#[derive(Debug)]
pub(super) struct FactsView {
    accounts: ViewCache<AccountFacts>,
    roles: ViewCache<Option<Role>>,
}

impl FactsView {
    pub(super) fn new(view: &LocalView) -> Self {
        Self {
            accounts: ViewCache::new(view, "account_facts"),
            roles: ViewCache::new(view, "roles"),
        }
    }

    fn view(&self) -> &LocalView {
        self.accounts.view()
    }

    fn role_key(&self, user: &str, account: &AccountId) -> tenantry_platform::view::CacheKey {
        self.roles
            .key(&[user.as_bytes(), account.as_str().as_bytes()])
    }

    /// The caller's standing from memory alone, if everything it depends on is there.
    pub(super) fn cached(&self, caller: &Caller, account_id: &AccountId) -> Option<Access> {
        let user = caller.user_id()?;
        let facts = self
            .accounts
            .get(self.accounts.key(&[account_id.as_str().as_bytes()]))?;
        let role = self.roles.get(self.role_key(user.as_str(), account_id))?;
        let partner_role = match &facts.managed_by {
            Some(partner) => self.roles.get(self.role_key(user.as_str(), partner))?,
            None => None,
        };
        Some(Access {
            caller: caller.clone(),
            facts: Some(facts),
            role,
            partner_role,
            has_owner: false,
        })
    }

    /// The account's facts from memory, if kept.
    pub(super) fn account(&self, account_id: &AccountId) -> Option<AccountFacts> {
        self.accounts
            .get(self.accounts.key(&[account_id.as_str().as_bytes()]))
    }

    /// A ticket for the account's facts, taken before reading them.
    pub(super) fn account_ticket(&self, account_id: &AccountId) -> Option<Ticket> {
        self.view().ticket(None, Some(account_id.as_str()))
    }

    /// Keeps an account's facts read under `ticket`.
    pub(super) fn keep_account(&self, facts: &AccountFacts, ticket: Ticket) {
        let key = self.accounts.key(&[facts.account_id.as_str().as_bytes()]);
        self.accounts.insert(key, facts.clone(), ticket);
    }

    /// Tickets for the account and the caller's role in it, taken before reading them.
    pub(super) fn tickets(&self, caller: &Caller, account_id: &AccountId) -> Tickets {
        let user = caller.user_id().map(|user| user.as_str());
        Tickets {
            account: self.view().ticket(None, Some(account_id.as_str())),
            role: user.and_then(|user| self.view().ticket(Some(user), Some(account_id.as_str()))),
            partner_role: None,
        }
    }

    /// The ticket for the caller's role in `partner`, taken before reading it.
    pub(super) fn partner_ticket(
        &self,
        caller: &Caller,
        partner: &AccountId,
        tickets: &mut Tickets,
    ) {
        if let Some(user) = caller.user_id() {
            tickets.partner_role = self
                .view()
                .ticket(Some(user.as_str()), Some(partner.as_str()));
        }
    }

    /// Keeps what the database answered, under the tickets taken before.
    pub(super) fn keep(&self, access: &Access, account_id: &AccountId, tickets: Tickets) {
        let Some(facts) = &access.facts else {
            return; // an unknown account is never kept: its creation must be visible at once
        };
        let Some(user) = access.caller.user_id() else {
            return;
        };
        if let Some(ticket) = tickets.account {
            let key = self.accounts.key(&[account_id.as_str().as_bytes()]);
            self.accounts.insert(key, facts.clone(), ticket);
        }
        if let Some(ticket) = tickets.role {
            self.roles.insert(
                self.role_key(user.as_str(), account_id),
                access.role,
                ticket,
            );
        }
        if let (Some(ticket), Some(partner)) = (tickets.partner_role, &facts.managed_by) {
            self.roles.insert(
                self.role_key(user.as_str(), partner),
                access.partner_role,
                ticket,
            );
        }
    }
}
