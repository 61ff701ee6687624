//! The product page's flow up to "switch to the customer": an operator creates an account and
//! promotes it to partner, adds its first member; the partner admin creates a customer, lists
//! customers, adds themself, and sees the customer in the account switcher.

use tenantry_e2e::{create_customer, partner_with_owner};
use tenantry_proto::membership::v1::{
    AddMyselfRequest, ListMembersRequest, ListMyAccountsRequest, MemberSource, Role,
};
use tenantry_proto::registry::v1::{AccountState, GetAccountRequest, ListManagedCustomersRequest};
use tenantry_testkit::{TestCluster, TestUser, on_both_backends};

async fn partner_admin_reaches_a_new_customer(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme-partner", "alice").await;
    let alice = &partner.owner;

    // The partner admin creates a customer: name + identifier.
    let customer = create_customer(cluster, alice, &partner.account.name, "globex")
        .await
        .expect("partner owner creates a customer");
    assert_eq!(customer.name, "accounts/globex");
    assert_eq!(customer.managed_by, partner.account.name);
    assert_eq!(customer.state, AccountState::Active as i32);
    assert!(!customer.partner);

    // "Customers" lists every customer managed by the partner.
    let listed = cluster
        .registry_as(alice)
        .list_managed_customers(ListManagedCustomersRequest {
            parent: partner.account.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list customers")
        .into_inner();
    assert_eq!(
        listed
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect::<Vec<_>>(),
        vec!["globex"]
    );

    // Creating a customer gives nobody access: alice is not in its user list yet.
    let mut switcher = cluster.membership_as(alice);
    let before = switcher
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("list my accounts")
        .into_inner();
    assert_eq!(
        before
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect::<Vec<_>>(),
        vec!["acme-partner"]
    );

    // Add Myself: alice assigns herself to the customer (idempotent).
    let added = switcher
        .add_myself(AddMyselfRequest {
            account: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("add myself")
        .into_inner();
    assert!(added.created);
    let member = added.member.expect("member");
    assert_eq!(member.role, Role::Admin as i32, "default AddMyself role");
    assert_eq!(member.source, MemberSource::SelfAssigned as i32);
    let again = switcher
        .add_myself(AddMyselfRequest {
            account: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("add myself again")
        .into_inner();
    assert!(!again.created, "a second AddMyself changes nothing");

    // The customer now shows in the account drop-down, with its name and alice's role.
    let after = switcher
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("list my accounts")
        .into_inner();
    let row = after
        .accounts
        .iter()
        .find(|a| a.account_id == "globex")
        .expect("the customer is in the switcher");
    assert_eq!(row.display_name, "Customer globex");
    assert_eq!(row.role, Role::Admin as i32);
    assert_eq!(row.managed_by, partner.account.name);
    assert_eq!(row.source, MemberSource::SelfAssigned as i32);

    // Switched to the customer, alice can read it and its user list.
    let read = cluster
        .registry_as(alice)
        .get_account(GetAccountRequest {
            name: customer.name.clone(),
        })
        .await
        .expect("read the customer")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(read.display_name, "Customer globex");
    let members = cluster
        .membership_as(alice)
        .list_members(ListMembersRequest {
            parent: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list the customer's users")
        .into_inner();
    assert_eq!(members.members.len(), 1);
    assert_eq!(members.members[0].user, alice.resource_name());
    assert_eq!(
        members.members[0].email, alice.email,
        "directory filled from the token"
    );
}

on_both_backends!(
    partner_admin_reaches_a_new_customer,
    super::partner_admin_reaches_a_new_customer
);
