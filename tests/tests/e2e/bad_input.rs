//! Bad input gets a clear error naming the field, never INTERNAL; bad credentials get
//! UNAUTHENTICATED; oversized requests RESOURCE_EXHAUSTED; retried creates are idempotent.

use tenantry_e2e::{expect_code, expect_invalid_field, partner_with_owner};
use tenantry_proto::membership::v1::{
    AddMemberRequest, ListMembersRequest, Role, add_member_request,
};
use tenantry_proto::registry::v1::{
    CreateAccountRequest, CreateManagedCustomerRequest, GetAccountRequest, ListAccountsRequest,
    ListManagedCustomersRequest,
};
use tenantry_testkit::{TestCluster, TestUser, on_both_backends};
use tonic::Code;

async fn invalid_fields_are_named(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let mut registry = cluster.registry_as(&partner.owner);
    let create = |customer_id: &str, display_name: &str| CreateManagedCustomerRequest {
        parent: partner.account.name.clone(),
        customer_id: customer_id.to_string(),
        display_name: display_name.to_string(),
        request_id: String::new(),
    };
    for bad_id in [
        "",
        "ab",
        "1abc",
        "abc-",
        "-abc",
        "a--b",
        "ABC",
        "with space",
        "umlaut-ü",
        &"a".repeat(33),
    ] {
        expect_invalid_field(
            registry
                .create_managed_customer(create(bad_id, "Fine"))
                .await,
            "customer_id",
        );
    }
    for bad_name in ["", "   ", "line\nbreak", "tab\there", &"x".repeat(121)] {
        expect_invalid_field(
            registry
                .create_managed_customer(create("fine-id", bad_name))
                .await,
            "display_name",
        );
    }
    // 120 characters of multi-byte text are fine: the limit counts characters, not bytes.
    registry
        .create_managed_customer(create("wide-name", &"ü".repeat(120)))
        .await
        .expect("120 characters are allowed");
    expect_invalid_field(
        registry
            .create_managed_customer(CreateManagedCustomerRequest {
                request_id: "not-a-uuid".into(),
                ..create("other-id", "Fine")
            })
            .await,
        "request_id",
    );
    expect_invalid_field(
        registry
            .create_managed_customer(CreateManagedCustomerRequest {
                parent: "partners/acme".into(),
                ..create("other-id", "Fine")
            })
            .await,
        "parent",
    );
    expect_invalid_field(
        registry
            .get_account(GetAccountRequest {
                name: "accounts/".into(),
            })
            .await,
        "name",
    );
    expect_invalid_field(
        registry
            .list_managed_customers(ListManagedCustomersRequest {
                parent: partner.account.name.clone(),
                page_size: -1,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    expect_invalid_field(
        registry
            .list_managed_customers(ListManagedCustomersRequest {
                parent: partner.account.name.clone(),
                page_token: "forged.token".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
    expect_invalid_field(
        cluster
            .membership_as(&partner.owner)
            .add_member(AddMemberRequest {
                parent: partner.account.name.clone(),
                principal: Some(add_member_request::Principal::User("people/x".into())),
                role: Role::Admin as i32,
                ..Default::default()
            })
            .await,
        "user",
    );
    expect_invalid_field(
        cluster
            .membership_as(&partner.owner)
            .add_member(AddMemberRequest {
                parent: partner.account.name.clone(),
                principal: Some(add_member_request::Principal::User("users/x".into())),
                role: 42,
                ..Default::default()
            })
            .await,
        "role",
    );
}

async fn pages_are_opaque_and_bound_to_their_query(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let mut registry = cluster.registry_as(&partner.owner);
    for index in 0..5 {
        registry
            .create_managed_customer(CreateManagedCustomerRequest {
                parent: partner.account.name.clone(),
                customer_id: format!("customer-{index}"),
                display_name: format!("Customer {index}"),
                request_id: String::new(),
            })
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = registry
            .list_managed_customers(ListManagedCustomersRequest {
                parent: partner.account.name.clone(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.accounts.len() <= 2);
        seen.extend(page.accounts.into_iter().map(|a| a.account_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // A token reused against another query is refused.
        expect_invalid_field(
            cluster
                .registry_as(&operator)
                .list_accounts(ListAccountsRequest {
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await,
            "page_token",
        );
        // And so is a tampered one.
        let mut tampered = token.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        expect_invalid_field(
            registry
                .list_managed_customers(ListManagedCustomersRequest {
                    parent: partner.account.name.clone(),
                    page_size: 2,
                    page_token: String::from_utf8(tampered).expect("ascii"),
                    ..Default::default()
                })
                .await,
            "page_token",
        );
    }
    assert_eq!(
        seen,
        (0..5)
            .map(|index| format!("customer-{index}"))
            .collect::<Vec<_>>()
    );
}

async fn credentials_are_checked(cluster: &TestCluster) {
    let alice = TestUser::new("alice");
    let request = || ListMembersRequest {
        parent: "accounts/acme".into(),
        ..Default::default()
    };
    expect_code(
        cluster.membership(None).list_members(request()).await,
        Code::Unauthenticated,
    );
    let expired = alice.token_with(|claims| claims.exp = claims.iat - 3600);
    let foreign_audience = alice.token_with(|claims| claims.aud = "someone-else".into());
    let foreign_issuer = alice.token_with(|claims| claims.iss = "evil".into());
    let mut forged = alice.token();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    for token in [
        expired,
        foreign_audience,
        foreign_issuer,
        forged,
        "garbage".into(),
    ] {
        expect_code(
            cluster
                .membership(Some(&token))
                .list_members(request())
                .await,
            Code::Unauthenticated,
        );
        expect_code(
            cluster
                .registry(Some(&token))
                .get_account(GetAccountRequest {
                    name: "accounts/acme".into(),
                })
                .await,
            Code::Unauthenticated,
        );
    }
    // Only operators create standalone accounts.
    expect_code(
        cluster
            .registry_as(&alice)
            .create_account(CreateAccountRequest {
                account_id: "mine".into(),
                display_name: "Mine".into(),
                request_id: String::new(),
            })
            .await,
        Code::PermissionDenied,
    );
    // Authorize is internal: people are refused.
    expect_code(
        cluster
            .membership_as(&alice)
            .authorize(tenantry_proto::membership::v1::AuthorizeRequest {
                subject: None,
                account: "accounts/acme".into(),
                permission: 1,
                bypass_view: false,
            })
            .await,
        Code::PermissionDenied,
    );
}

async fn oversized_requests_are_resource_exhausted(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    expect_code(
        cluster
            .registry_as(&operator)
            .create_account(CreateAccountRequest {
                account_id: "big".into(),
                display_name: "x".repeat(200 * 1024),
                request_id: String::new(),
            })
            .await,
        Code::ResourceExhausted,
    );
}

async fn retried_creates_return_the_first_result(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let mut registry = cluster.registry_as(&operator);
    let request_id = uuid::Uuid::new_v4().to_string();
    let create = || CreateAccountRequest {
        account_id: "retried".into(),
        display_name: "Retried".into(),
        request_id: request_id.clone(),
    };
    let first = registry
        .create_account(create())
        .await
        .expect("first")
        .into_inner();
    let second = registry
        .create_account(create())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first.account, second.account);
    // The same request id for a different request is refused.
    expect_invalid_field(
        registry
            .create_account(CreateAccountRequest {
                account_id: "different".into(),
                ..create()
            })
            .await,
        "request_id",
    );
    // Without a request id, a repeat is a duplicate.
    expect_code(
        registry
            .create_account(CreateAccountRequest {
                request_id: String::new(),
                ..create()
            })
            .await,
        Code::AlreadyExists,
    );
}

on_both_backends!(invalid_fields, super::invalid_fields_are_named);
on_both_backends!(
    page_tokens,
    super::pages_are_opaque_and_bound_to_their_query
);
on_both_backends!(credentials, super::credentials_are_checked);
on_both_backends!(oversized, super::oversized_requests_are_resource_exhausted);
on_both_backends!(
    idempotent_creates,
    super::retried_creates_return_the_first_result
);
