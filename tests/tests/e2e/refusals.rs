//! The refusals around the seed flow: tenants are walled off from each other, roles limit what
//! people do, identifiers never change, owner rules hold, and races have exactly one winner.

use tenantry_e2e::{
    add_member, create_customer, expect_code, expect_invalid_field, partner_with_owner,
};
use tenantry_proto::membership::v1::{
    AddMyselfRequest, ListMembersRequest, RemoveMemberRequest, Role, UpdateMemberRequest,
};
use tenantry_proto::registry::v1::{
    Account, CreateManagedCustomerRequest, DeleteAccountRequest, GetAccountRequest,
    ListManagedCustomersRequest, UpdateAccountRequest,
};
use tenantry_testkit::{TestCluster, TestUser, on_both_backends};
use tonic::Code;

async fn a_second_partner_cannot_see_or_touch_the_first_ones_customers(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let first = partner_with_owner(cluster, &operator, "first", "alice").await;
    let second = partner_with_owner(cluster, &operator, "second", "bob").await;
    let customer = create_customer(cluster, &first.owner, &first.account.name, "globex")
        .await
        .expect("create customer");
    let bob = &second.owner;
    let mut registry = cluster.registry_as(bob);
    let mut membership = cluster.membership_as(bob);

    // An existing customer of someone else and an account that does not exist look the same.
    for name in [customer.name.clone(), "accounts/does-not-exist".to_string()] {
        expect_code(
            registry
                .get_account(GetAccountRequest { name: name.clone() })
                .await,
            Code::PermissionDenied,
        );
        expect_code(
            membership
                .add_myself(AddMyselfRequest {
                    account: name.clone(),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
        );
        expect_code(
            membership
                .list_members(ListMembersRequest {
                    parent: name.clone(),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
        );
        expect_code(
            registry
                .update_account(UpdateAccountRequest {
                    account: Some(Account {
                        name: name.clone(),
                        display_name: "Hijacked".into(),
                        ..Default::default()
                    }),
                    update_mask: None,
                })
                .await,
            Code::PermissionDenied,
        );
        expect_code(
            registry
                .delete_account(DeleteAccountRequest {
                    name: name.clone(),
                    etag: String::new(),
                })
                .await,
            Code::PermissionDenied,
        );
    }
    expect_code(
        registry
            .list_managed_customers(ListManagedCustomersRequest {
                parent: first.account.name.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        create_customer(cluster, bob, &first.account.name, "planted").await,
        Code::PermissionDenied,
    );

    // Bob's own list does not contain the other partner's customer.
    let own = registry
        .list_managed_customers(ListManagedCustomersRequest {
            parent: second.account.name.clone(),
            ..Default::default()
        })
        .await
        .expect("own customers")
        .into_inner();
    assert!(own.accounts.is_empty());

    // Operators may know what does not exist.
    expect_code(
        cluster
            .registry_as(&operator)
            .get_account(GetAccountRequest {
                name: "accounts/does-not-exist".into(),
            })
            .await,
        Code::NotFound,
    );
    // And the untouched customer kept its name.
    let read = cluster
        .registry_as(&first.owner)
        .get_account(GetAccountRequest {
            name: customer.name.clone(),
        })
        .await
        .expect("owner reads")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(read.display_name, customer.display_name);
}

async fn an_employee_cannot_create_customers(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let emma = TestUser::new("emma");
    add_member(
        cluster,
        &partner.owner,
        &partner.account.name,
        &emma,
        Role::Employee,
    )
    .await
    .expect("owner adds an employee");
    expect_code(
        create_customer(cluster, &emma, &partner.account.name, "sneaky").await,
        Code::PermissionDenied,
    );
    // An employee may still list the partner's customers and assign themself to one.
    create_customer(cluster, &partner.owner, &partner.account.name, "globex")
        .await
        .expect("owner creates a customer");
    let listed = cluster
        .registry_as(&emma)
        .list_managed_customers(ListManagedCustomersRequest {
            parent: partner.account.name.clone(),
            ..Default::default()
        })
        .await
        .expect("employee lists customers")
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
    cluster
        .membership_as(&emma)
        .add_myself(AddMyselfRequest {
            account: "accounts/globex".into(),
            ..Default::default()
        })
        .await
        .expect("employee adds themself");
    // A customer's own admin is not a partner member: no customers of their own.
    expect_code(
        create_customer(cluster, &emma, "accounts/globex", "nested").await,
        Code::PermissionDenied,
    );
}

async fn nobody_changes_an_identifier(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let customer = create_customer(cluster, &partner.owner, &partner.account.name, "globex")
        .await
        .expect("create customer");
    for actor in [&partner.owner, &operator] {
        let mut registry = cluster.registry_as(actor);
        expect_invalid_field(
            registry
                .update_account(UpdateAccountRequest {
                    account: Some(Account {
                        name: customer.name.clone(),
                        account_id: "renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["account_id".into()],
                    }),
                })
                .await,
            "update_mask.paths",
        );
        expect_invalid_field(
            registry
                .update_account(UpdateAccountRequest {
                    account: Some(Account {
                        name: customer.name.clone(),
                        account_id: "renamed".into(),
                        display_name: "Globex Corp".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                })
                .await,
            "account.account_id",
        );
    }
    // The display name can change, guarded by the etag.
    let mut registry = cluster.registry_as(&partner.owner);
    let renamed = registry
        .update_account(UpdateAccountRequest {
            account: Some(Account {
                name: customer.name.clone(),
                display_name: "  Globex Corp  ".into(),
                etag: customer.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .expect("rename")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(renamed.display_name, "Globex Corp", "trimmed");
    assert_eq!(renamed.account_id, "globex");
    assert_ne!(renamed.etag, customer.etag);
    expect_code(
        registry
            .update_account(UpdateAccountRequest {
                account: Some(Account {
                    name: customer.name.clone(),
                    display_name: "Stale".into(),
                    etag: customer.etag.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await,
        Code::Aborted,
    );
    // A deleted account's identifier is never reused.
    let current = registry
        .get_account(GetAccountRequest {
            name: customer.name.clone(),
        })
        .await
        .expect("read")
        .into_inner()
        .account
        .expect("account");
    registry
        .delete_account(DeleteAccountRequest {
            name: customer.name.clone(),
            etag: current.etag,
        })
        .await
        .expect("partner owner deletes the customer");
    expect_code(
        create_customer(cluster, &partner.owner, &partner.account.name, "globex").await,
        Code::AlreadyExists,
    );
}

async fn owner_rules_hold(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let alice = &partner.owner;
    let account = partner.account.name.clone();

    // An ADMIN cannot grant OWNER while the account has one.
    let adam = TestUser::new("adam");
    add_member(cluster, alice, &account, &adam, Role::Admin)
        .await
        .expect("add admin");
    expect_code(
        add_member(cluster, &adam, &account, &TestUser::new("x"), Role::Owner).await,
        Code::PermissionDenied,
    );

    // A second OWNER is fine, a third is refused.
    let olga = TestUser::new("olga");
    add_member(cluster, alice, &account, &olga, Role::Owner)
        .await
        .expect("second owner");
    let status = expect_code(
        add_member(
            cluster,
            alice,
            &account,
            &TestUser::new("third"),
            Role::Owner,
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(
        tonic_types::StatusExt::get_error_details(&status)
            .precondition_failure()
            .is_some(),
        "FAILED_PRECONDITION carries PreconditionFailure"
    );
    expect_code(
        cluster
            .membership_as(alice)
            .update_member(UpdateMemberRequest {
                member: Some(tenantry_proto::membership::v1::Member {
                    name: format!("{account}/members/{}", adam.sub),
                    role: Role::Owner as i32,
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await,
        Code::FailedPrecondition,
    );

    // With two owners one may go; the last one may neither leave nor be demoted.
    cluster
        .membership_as(&olga)
        .remove_member(RemoveMemberRequest {
            name: format!("{account}/members/{}", olga.sub),
            etag: String::new(),
        })
        .await
        .expect("one of two owners leaves");
    expect_code(
        cluster
            .membership_as(alice)
            .remove_member(RemoveMemberRequest {
                name: format!("{account}/members/{}", alice.sub),
                etag: String::new(),
            })
            .await,
        Code::FailedPrecondition,
    );
    expect_code(
        cluster
            .membership_as(&operator)
            .update_member(UpdateMemberRequest {
                member: Some(tenantry_proto::membership::v1::Member {
                    name: format!("{account}/members/{}", alice.sub),
                    role: Role::Admin as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".into()],
                }),
            })
            .await,
        Code::FailedPrecondition,
    );
}

async fn concurrent_creates_of_one_identifier_have_one_winner(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let attempts = (0..12).map(|attempt| {
        let mut registry = cluster.registry_as(&partner.owner);
        let parent = partner.account.name.clone();
        async move {
            registry
                .create_managed_customer(CreateManagedCustomerRequest {
                    parent,
                    customer_id: "contested".into(),
                    display_name: format!("Attempt {attempt}"),
                    request_id: String::new(),
                })
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(winners, 1, "exactly one create wins: {results:?}");
    for result in results.into_iter().filter(|result| result.is_err()) {
        expect_code(result, Code::AlreadyExists);
    }
    let listed = cluster
        .registry_as(&partner.owner)
        .list_managed_customers(ListManagedCustomersRequest {
            parent: partner.account.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
}

on_both_backends!(
    second_partner_is_walled_off,
    super::a_second_partner_cannot_see_or_touch_the_first_ones_customers
);
on_both_backends!(
    employee_cannot_create_customers,
    super::an_employee_cannot_create_customers
);
on_both_backends!(
    identifiers_never_change,
    super::nobody_changes_an_identifier
);
on_both_backends!(owner_rules, super::owner_rules_hold);
on_both_backends!(
    concurrent_creates,
    super::concurrent_creates_of_one_identifier_have_one_winner
);
