//! The customer registry's tables.

use prost_types::FieldMask;
use tenantry_proto::registry::v1 as pb;
use tenantry_testkit::TestCluster;
use tonic::Code;

use super::values::{
    UNKNOWN_ENUMS, bad_account_names, bad_identifiers, bad_line_text, bad_request_ids,
    good_line_text, oversized,
};
use super::{Case, R, Tally, World, accepted, code, invalid, named, page_entries};

/// The longest display name.
const MAX_DISPLAY_NAME: usize = 120;

pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let client = |rpc: &str| cluster.registry(Some(&world.caller_of(&format!("{R}/{rpc}"))));

    let registry = client("CreateAccount");
    tally
        .run(&format!("{R}/CreateAccount"), create_account(), |request| {
            let mut registry = registry.clone();
            async move { registry.create_account(request).await.map(drop) }
        })
        .await;

    let registry = client("CreateManagedCustomer");
    tally
        .run(
            &format!("{R}/CreateManagedCustomer"),
            create_managed_customer(world),
            |request| {
                let mut registry = registry.clone();
                async move { registry.create_managed_customer(request).await.map(drop) }
            },
        )
        .await;

    let registry = client("ListManagedCustomers");
    tally
        .run(
            &format!("{R}/ListManagedCustomers"),
            list_managed_customers(world),
            |request| {
                let mut registry = registry.clone();
                async move { registry.list_managed_customers(request).await.map(drop) }
            },
        )
        .await;

    let registry = client("GetAccount");
    let cases = named("name", |name| pb::GetAccountRequest { name });
    tally
        .run(&format!("{R}/GetAccount"), cases, |request| {
            let mut registry = registry.clone();
            async move { registry.get_account(request).await.map(drop) }
        })
        .await;

    let registry = client("BatchGetAccounts");
    tally
        .run(
            &format!("{R}/BatchGetAccounts"),
            batch_get_accounts(world),
            |request| {
                let mut registry = registry.clone();
                async move { registry.batch_get_accounts(request).await.map(drop) }
            },
        )
        .await;

    let registry = client("ListAccounts");
    tally
        .run(
            &format!("{R}/ListAccounts"),
            list_accounts(world),
            |request| {
                let mut registry = registry.clone();
                async move { registry.list_accounts(request).await.map(drop) }
            },
        )
        .await;

    let registry = client("UpdateAccount");
    tally
        .run(
            &format!("{R}/UpdateAccount"),
            update_account(world),
            |request| {
                let mut registry = registry.clone();
                async move { registry.update_account(request).await.map(drop) }
            },
        )
        .await;

    // The state changes: a stale etag must leave the account as it is (ABORTED).
    let registry = client("PromoteToPartner");
    let mut cases = named("name", |name| pb::PromoteToPartnerRequest {
        name,
        etag: String::new(),
    });
    cases.push(code(
        "an etag that is no version",
        Code::Aborted,
        pb::PromoteToPartnerRequest {
            name: world.partner.clone(),
            etag: "not-an-etag".into(),
        },
    ));
    tally
        .run(&format!("{R}/PromoteToPartner"), cases, |request| {
            let mut registry = registry.clone();
            async move { registry.promote_to_partner(request).await.map(drop) }
        })
        .await;

    let registry = client("DisableAccount");
    let mut cases = named("name", |name| pb::DisableAccountRequest {
        name,
        etag: String::new(),
    });
    cases.push(stale(pb::DisableAccountRequest {
        name: world.customer.clone(),
        etag: "-1".into(),
    }));
    tally
        .run(&format!("{R}/DisableAccount"), cases, |request| {
            let mut registry = registry.clone();
            async move { registry.disable_account(request).await.map(drop) }
        })
        .await;

    let registry = client("EnableAccount");
    let cases = named("name", |name| pb::EnableAccountRequest {
        name,
        etag: String::new(),
    });
    tally
        .run(&format!("{R}/EnableAccount"), cases, |request| {
            let mut registry = registry.clone();
            async move { registry.enable_account(request).await.map(drop) }
        })
        .await;

    let registry = client("DeleteAccount");
    let mut cases = named("name", |name| pb::DeleteAccountRequest {
        name,
        etag: String::new(),
    });
    cases.push(stale(pb::DeleteAccountRequest {
        name: world.customer.clone(),
        etag: "99999999999999999999999".into(),
    }));
    tally
        .run(&format!("{R}/DeleteAccount"), cases, |request| {
            let mut registry = registry.clone();
            async move { registry.delete_account(request).await.map(drop) }
        })
        .await;
}

fn stale<Req>(request: Req) -> Case<Req> {
    code(
        "an etag that is not the current one",
        Code::Aborted,
        request,
    )
}

fn create_account() -> Vec<Case<pb::CreateAccountRequest>> {
    let make = |account_id: &str, display_name: &str, request_id: &str| pb::CreateAccountRequest {
        account_id: account_id.into(),
        display_name: display_name.into(),
        request_id: request_id.into(),
    };
    let mut cases = Vec::new();
    for (what, id) in bad_identifiers() {
        cases.push(invalid(
            format!("account_id: {what}"),
            "account_id",
            make(&id, "Fine", ""),
        ));
    }
    let fresh = std::sync::atomic::AtomicUsize::new(0);
    cases.extend(display_names("display_name", |name| {
        let n = fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        make(&format!("named-{n}"), &name, "")
    }));
    for (what, id) in bad_request_ids() {
        cases.push(invalid(
            format!("request_id: {what}"),
            "request_id",
            make("fine-id", "Fine", &id),
        ));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        make("fine-id", &oversized(), ""),
    ));
    cases
}

/// Display-name entries for `field`: every refused value, then the accepted ones (each with a
/// fresh identifier where the request creates something).
fn display_names<Req>(field: &str, make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = [("empty", String::new()), ("blank", "  \u{3000} ".into())]
        .into_iter()
        .chain(bad_line_text(MAX_DISPLAY_NAME))
        .map(|(what, name)| invalid(format!("{field}: {what}"), field, make(name)))
        .collect();
    cases.extend(
        good_line_text(MAX_DISPLAY_NAME)
            .into_iter()
            .map(|(what, name)| accepted(format!("{field}: {what}"), make(name))),
    );
    cases
}

fn create_managed_customer(world: &World) -> Vec<Case<pb::CreateManagedCustomerRequest>> {
    let make = |parent: &str, customer_id: &str, display_name: &str, request_id: &str| {
        pb::CreateManagedCustomerRequest {
            parent: parent.into(),
            customer_id: customer_id.into(),
            display_name: display_name.into(),
            request_id: request_id.into(),
        }
    };
    let partner = world.partner.as_str();
    let mut cases = Vec::new();
    for (what, parent) in bad_account_names() {
        cases.push(invalid(
            format!("parent: {what}"),
            "parent",
            make(&parent, "fine-id", "Fine", ""),
        ));
    }
    cases.push(code(
        "parent: an account that does not exist",
        Code::NotFound,
        make("accounts/no-such-partner", "fine-id", "Fine", ""),
    ));
    for (what, id) in bad_identifiers() {
        cases.push(invalid(
            format!("customer_id: {what}"),
            "customer_id",
            make(partner, &id, "Fine", ""),
        ));
    }
    let fresh = std::sync::atomic::AtomicUsize::new(0);
    cases.extend(display_names("display_name", |name| {
        let n = fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        make(partner, &format!("text-{n}"), &name, "")
    }));
    for (what, id) in bad_request_ids() {
        cases.push(invalid(
            format!("request_id: {what}"),
            "request_id",
            make(partner, "fine-id", "Fine", &id),
        ));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        make(partner, "fine-id", &oversized(), ""),
    ));
    cases
}

fn list_managed_customers(world: &World) -> Vec<Case<pb::ListManagedCustomersRequest>> {
    let mut cases = named("parent", |parent| pb::ListManagedCustomersRequest {
        parent,
        ..Default::default()
    });
    cases.extend(page_entries(
        |page_size, page_token| pb::ListManagedCustomersRequest {
            parent: world.partner.clone(),
            page_size,
            page_token,
            state: 0,
        },
        &world.foreign_token,
    ));
    for (what, state) in UNKNOWN_ENUMS {
        cases.push(invalid(
            format!("state {what}"),
            "state",
            pb::ListManagedCustomersRequest {
                parent: world.partner.clone(),
                state,
                ..Default::default()
            },
        ));
    }
    cases
}

fn list_accounts(world: &World) -> Vec<Case<pb::ListAccountsRequest>> {
    // The foreign token belongs to ListAccounts itself: with other filters it is foreign.
    let mut cases = page_entries(
        |page_size, page_token| pb::ListAccountsRequest {
            page_size,
            page_token,
            state: 0,
            partners_only: true,
        },
        &world.foreign_token,
    );
    for (what, state) in UNKNOWN_ENUMS {
        cases.push(invalid(
            format!("state {what}"),
            "state",
            pb::ListAccountsRequest {
                state,
                ..Default::default()
            },
        ));
    }
    cases.push(invalid(
        "page_token of the same query with another state",
        "page_token",
        pb::ListAccountsRequest {
            page_token: world.foreign_token.clone(),
            state: pb::AccountState::Deleted as i32,
            ..Default::default()
        },
    ));
    cases
}

fn update_account(world: &World) -> Vec<Case<pb::UpdateAccountRequest>> {
    let make = |name: &str, display_name: &str, paths: &[&str]| pb::UpdateAccountRequest {
        account: Some(pb::Account {
            name: name.into(),
            display_name: display_name.into(),
            ..Default::default()
        }),
        update_mask: (!paths.is_empty()).then(|| FieldMask {
            paths: paths.iter().map(|path| path.to_string()).collect(),
        }),
    };
    let customer = world.customer.as_str();
    let mut cases = vec![invalid(
        "no account",
        "account",
        pb::UpdateAccountRequest {
            account: None,
            update_mask: None,
        },
    )];
    for (what, name) in bad_account_names() {
        cases.push(invalid(
            format!("account.name: {what}"),
            "account.name",
            make(&name, "Fine", &[]),
        ));
    }
    cases.push(code(
        "account.name: an account that does not exist",
        Code::NotFound,
        make("accounts/no-such-account", "Fine", &[]),
    ));
    for (what, paths) in [
        ("account_id", vec!["account_id"]),
        ("name", vec!["name"]),
        ("partner", vec!["partner"]),
        ("managed_by", vec!["managed_by"]),
        ("a path with a newline", vec!["display_name\n"]),
        ("an empty path", vec![""]),
        ("display_name and state", vec!["display_name", "state"]),
        ("unknown path", vec!["no_such_field"]),
    ] {
        cases.push(invalid(
            format!("update_mask: {what}"),
            "update_mask.paths",
            make(customer, "Fine", &paths),
        ));
    }
    let mut changed_id = make(customer, "Fine", &[]);
    if let Some(account) = &mut changed_id.account {
        account.account_id = "another-id".into();
    }
    cases.push(invalid(
        "account.account_id differs from the name",
        "account.account_id",
        changed_id,
    ));
    cases.extend(display_names("account.display_name", |name| {
        make(customer, &name, &["display_name"])
    }));
    let mut stale_etag = make(customer, "Fine", &[]);
    if let Some(account) = &mut stale_etag.account {
        account.etag = "W/\"1\"".into();
    }
    cases.push(stale(stale_etag));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        make(customer, &oversized(), &[]),
    ));
    cases
}

fn batch_get_accounts(world: &World) -> Vec<Case<pb::BatchGetAccountsRequest>> {
    let batch = |names: Vec<String>| pb::BatchGetAccountsRequest { names };
    let good = world.customer.clone();
    let mut cases: Vec<Case<pb::BatchGetAccountsRequest>> = bad_account_names()
        .into_iter()
        .flat_map(|(what, name)| {
            [
                invalid(
                    format!("names[0]: {what}"),
                    "names[0]",
                    batch(vec![name.clone()]),
                ),
                invalid(
                    format!("names[1]: {what}"),
                    "names[1]",
                    batch(vec![good.clone(), name]),
                ),
            ]
        })
        .collect();
    cases.push(invalid("names: empty", "names", batch(Vec::new())));
    cases.push(invalid(
        "names: 1,025 of them",
        "names",
        batch(vec![good.clone(); 1025]),
    ));
    cases.push(code(
        "names: oversized request",
        Code::ResourceExhausted,
        batch(vec![format!("accounts/{}", oversized())]),
    ));
    cases.push(accepted(
        "names: unknown accounts are left out",
        batch(vec!["accounts/no-such-account".into(), good.clone()]),
    ));
    cases.push(accepted("names: 1,024 duplicates", batch(vec![good; 1024])));
    cases
}
