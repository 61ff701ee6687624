//! The bad-input corpus: for every RPC of the five services, a table of invalid values (empty,
//! over-long, control characters, Unicode confusables and bidirectional controls, wrong
//! resource-name shapes, negative and huge page sizes, forged page tokens, malformed e-mails,
//! unknown enum values, oversized and undecodable messages), each sent by a caller who is
//! allowed to make the call, so authorization cannot mask validation.
//!
//! Every refusal must carry the documented code — INVALID_ARGUMENT with a `BadRequest`
//! violation naming the offending field, or the code the proto comment gives for that input
//! (NOT_FOUND for a well-formed name nothing has, RESOURCE_EXHAUSTED for an oversized request,
//! ABORTED for an etag that is not current) — never INTERNAL, never a dropped connection. A few
//! entries are documented as accepted (page sizes above 1000 are capped; free text may be in any
//! script). The typed tables are in `bad_input_corpus/{registry,membership,access,invitation,
//! notification,audit}.rs`; `raw.rs` adds, for every RPC and from the API's descriptors, requests no
//! typed client can send (invalid UTF-8, wrong wire types, bytes that are not protobuf). An RPC
//! without typed entries fails the test.

mod access;
mod audit;
mod invitation;
mod membership;
mod notification;
mod raw;
mod registry;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use prost::Message as _;
use tenantry_e2e::{add_member, create_customer, invite, partner_with_owner, send_message};
use tenantry_proto::membership::v1::{AddMyselfRequest, Role};
use tenantry_proto::notification::v1::ReadPolicy;
use tenantry_proto::registry::v1::ListAccountsRequest;
use tenantry_testkit::{Backend, TestCluster, TestUser, postgres_or_skip};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use values::{BAD_PAGE_SIZES, HUGE_PAGE_SIZE, bad_account_names, bad_page_tokens, oversized};

pub const R: &str = "tenantry.registry.v1.CustomerRegistryService";
pub const M: &str = "tenantry.membership.v1.MembershipService";
pub const I: &str = "tenantry.invitation.v1.InvitationService";
pub const N: &str = "tenantry.notification.v1.NotificationService";
pub const AU: &str = "tenantry.audit.v1.AuditService";

/// What one corpus entry must get.
#[derive(Clone, Debug)]
pub enum Expect {
    /// INVALID_ARGUMENT with a `BadRequest` violation naming this field.
    Invalid(String),
    /// This code, the one the API documents for the input (with ErrorInfo domain `tenantry`).
    Code(Code),
    /// Success: the documented handling of an unusual but valid value.
    Accepted,
}

/// One entry of an RPC's table.
#[derive(Debug)]
pub struct Case<R> {
    /// What is wrong with the request, for the report.
    pub what: String,
    /// The request.
    pub request: R,
    /// What it must get.
    pub expect: Expect,
}

/// An entry that must be INVALID_ARGUMENT naming `field`.
pub fn invalid<R>(what: impl Into<String>, field: &str, request: R) -> Case<R> {
    Case {
        what: what.into(),
        request,
        expect: Expect::Invalid(field.to_string()),
    }
}

/// An entry that must get `code`.
pub fn code<R>(what: impl Into<String>, code: Code, request: R) -> Case<R> {
    Case {
        what: what.into(),
        request,
        expect: Expect::Code(code),
    }
}

/// An entry that must succeed.
pub fn accepted<R>(what: impl Into<String>, request: R) -> Case<R> {
    Case {
        what: what.into(),
        request,
        expect: Expect::Accepted,
    }
}

/// The entries of a call about one account named in `field`: every malformed name, an
/// oversized one, and a well-formed name of an account that does not exist (NOT_FOUND for the
/// operator).
pub fn named<Req>(field: &str, make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = bad_account_names()
        .into_iter()
        .map(|(what, name)| invalid(format!("{field}: {what}"), field, make(name)))
        .collect();
    cases.push(code(
        format!("{field}: oversized request"),
        Code::ResourceExhausted,
        make(format!("accounts/{}", oversized())),
    ));
    cases.push(code(
        format!("{field}: an account that does not exist"),
        Code::NotFound,
        make("accounts/no-such-account".into()),
    ));
    cases
}

pub fn page_entries<Req>(make: impl Fn(i32, String) -> Req, foreign: &str) -> Vec<Case<Req>> {
    let mut cases = Vec::new();
    for (what, size) in BAD_PAGE_SIZES {
        cases.push(invalid(
            format!("page_size {what}"),
            "page_size",
            make(size, String::new()),
        ));
    }
    cases.push(accepted(
        "page_size i32::MAX (capped at 1000)",
        make(HUGE_PAGE_SIZE, String::new()),
    ));
    for (what, token) in bad_page_tokens(foreign) {
        cases.push(invalid(
            format!("page_token: {what}"),
            "page_token",
            make(0, token),
        ));
    }
    cases
}

/// The shared world the corpus runs against: a partner with its OWNER, a customer the OWNER
/// joined (ADMIN) for 30 days, an EMPLOYEE of the customer, a pending invitation, a delivered
/// message and a genuine page token of another query.
#[derive(Debug)]
pub struct World {
    /// A platform operator: allowed nearly everywhere.
    pub operator: TestUser,
    /// The partner's OWNER, ADMIN of the customer.
    pub owner: TestUser,
    /// The OWNER's time-bound membership in the customer (AddMyself for 30 days).
    pub timed_member: String,
    /// When `timed_member` ends.
    pub timed_member_expiry: prost_types::Timestamp,
    /// An EMPLOYEE of the customer, recipient of the message.
    pub employee: TestUser,
    /// `accounts/{partner}`.
    pub partner: String,
    /// `accounts/{customer}`.
    pub customer: String,
    /// The employee's membership in the customer.
    pub member: String,
    /// A pending invitation of the customer.
    pub invitation: String,
    /// A message the partner sent to the customer.
    pub message: String,
    /// A real `next_page_token` of ListAccounts (page size 1): valid, but for another query.
    pub foreign_token: String,
    /// A token of the invitation service's identity.
    pub service_token: String,
}

impl World {
    async fn build(cluster: &TestCluster) -> Self {
        let operator = TestUser::operator("ops");
        let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
        let customer = create_customer(cluster, &partner.owner, &partner.account.name, "globex")
            .await
            .expect("the partner creates its customer");
        let timed = cluster
            .membership_as(&partner.owner)
            .add_myself(AddMyselfRequest {
                account: customer.name.clone(),
                access_duration: Some(prost_types::Duration {
                    seconds: 30 * values::DAY,
                    nanos: 0,
                }),
            })
            .await
            .expect("the partner's owner joins the customer for 30 days")
            .into_inner()
            .member
            .expect("member");
        let timed_member_expiry = timed.expire_time.expect("a time-bound membership");
        let employee = TestUser::new("erin");
        add_member(
            cluster,
            &operator,
            &customer.name,
            &employee,
            Role::Employee,
        )
        .await
        .expect("the operator adds an employee");
        let invitation = invite(
            cluster,
            &operator,
            &customer.name,
            "ivy@example.com",
            Role::Employee,
        )
        .await
        .expect("the operator invites ivy");
        let message = send_message(
            cluster,
            &partner.owner,
            &partner.account.name,
            &[&customer.name],
            "Corpus note",
            ReadPolicy::AllMustRead,
        )
        .await
        .expect("the partner sends a message");
        let foreign_token = cluster
            .registry_as(&operator)
            .list_accounts(ListAccountsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("list accounts")
            .into_inner()
            .next_page_token;
        assert!(!foreign_token.is_empty(), "two accounts make two pages");
        Self {
            member: format!("{}/members/{}", customer.name, employee.sub),
            partner: partner.account.name,
            customer: customer.name,
            owner: partner.owner,
            timed_member: timed.name,
            timed_member_expiry,
            employee,
            invitation: invitation.name,
            message: message.name,
            foreign_token,
            service_token: cluster.service_token("invitation"),
            operator,
        }
    }

    /// The token of a caller allowed to call `rpc` (`Service/Method`) about the world.
    pub fn caller_of(&self, rpc: &str) -> String {
        match rpc.rsplit('/').next().unwrap_or_default() {
            "Authorize" | "GetOwnerCapacity" | "CheckInvitee" | "BatchGetAccounts" => {
                self.service_token.clone()
            }
            // Operators use AddMember; AddMyself is for partner people. Operators grant
            // directly and never ask for access: the OWNER (ADMIN of the customer) asks.
            "AddMyself" | "CreateAccessRequest" => self.owner.token(),
            // The inbox and invitation links act for the person calling.
            "AcknowledgeMessage"
            | "ListPendingMessages"
            | "WatchInbox"
            | "AcceptInvitation"
            | "DeclineInvitation"
            | "ListMyInvitations"
            | "LookupInvitation"
            | "ListMyAccounts" => self.employee.token(),
            _ => self.operator.token(),
        }
    }
}

/// Why a result disagrees with what the entry expects, if it does.
fn judge(result: &Result<(), Status>, expect: &Expect) -> Option<String> {
    let status = match (result, expect) {
        (Ok(()), Expect::Accepted) => return None,
        (Ok(()), _) => return Some(format!("expected {expect:?}, got success")),
        (Err(status), Expect::Accepted) => {
            return Some(format!("expected success, got {}", describe(status)));
        }
        (Err(status), _) => status,
    };
    let wanted = match expect {
        Expect::Invalid(_) => Code::InvalidArgument,
        Expect::Code(code) => *code,
        Expect::Accepted => unreachable!("handled above"),
    };
    if status.code() != wanted {
        return Some(format!("expected {expect:?}, got {}", describe(status)));
    }
    let details = status.get_error_details();
    if details.error_info().map(|info| info.domain.as_str()) != Some("tenantry") {
        return Some(format!(
            "no ErrorInfo with domain tenantry: {}",
            describe(status)
        ));
    }
    if let Expect::Invalid(field) = expect {
        let fields: Vec<&str> = details
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|violation| violation.field.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if !fields.contains(&field.as_str()) {
            return Some(format!(
                "INVALID_ARGUMENT names {fields:?}, not {field:?}: {}",
                describe(status)
            ));
        }
    }
    None
}

fn describe(status: &Status) -> String {
    let message: String = status.message().chars().take(160).collect();
    format!("{:?} {message:?}", status.code())
}

/// What the corpus found: entries per RPC and every disagreement.
#[derive(Debug, Default)]
pub struct Tally {
    typed: BTreeMap<String, usize>,
    raw: BTreeMap<String, usize>,
    accepted: usize,
    problems: Vec<String>,
}

impl Tally {
    /// Sends every entry of `rpc`'s table through `call` and judges the answers.
    pub async fn run<Req, F, Fut>(&mut self, rpc: &str, cases: Vec<Case<Req>>, call: F)
    where
        F: Fn(Req) -> Fut,
        Fut: Future<Output = Result<(), Status>>,
    {
        *self.typed.entry(rpc.to_string()).or_default() += cases.len();
        for case in cases {
            let result = call(case.request).await;
            self.note(rpc, &case.what, &result, &case.expect);
        }
    }

    /// Records the answer to one raw request.
    pub fn note_raw(
        &mut self,
        rpc: &str,
        what: &str,
        result: &Result<(), Status>,
        expect: &Expect,
    ) {
        *self.raw.entry(rpc.to_string()).or_default() += 1;
        self.note(rpc, what, result, expect);
    }

    fn note(&mut self, rpc: &str, what: &str, result: &Result<(), Status>, expect: &Expect) {
        if matches!(expect, Expect::Accepted) {
            self.accepted += 1;
        }
        if let Some(problem) = judge(result, expect) {
            self.problems.push(format!("{rpc} — {what}: {problem}"));
        }
    }
}

/// Every RPC of the five services, from the descriptors the servers are built from.
pub fn rpcs_of_the_api() -> BTreeSet<String> {
    let files = prost_types::FileDescriptorSet::decode(tenantry_proto::FILE_DESCRIPTOR_SET)
        .expect("the API's descriptor set");
    files
        .file
        .iter()
        .filter(|file| file.package().starts_with("tenantry."))
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_bad_input_with_the_documented_code() {
    // PostgreSQL when configured (the production shape), else the embedded default.
    let backend = match postgres_or_skip() {
        Some(_) => Backend::Postgres,
        None => Backend::Sqlite,
    };
    let cluster = TestCluster::start(backend).await;
    let world = World::build(&cluster).await;
    let mut tally = Tally::default();
    registry::run(&cluster, &world, &mut tally).await;
    membership::run(&cluster, &world, &mut tally).await;
    access::run(&cluster, &world, &mut tally).await;
    invitation::run(&cluster, &world, &mut tally).await;
    notification::run(&cluster, &world, &mut tally).await;
    audit::run(&cluster, &world, &mut tally).await;
    raw::run(&cluster, &world, &mut tally).await;
    cluster.stop().await;

    let api = rpcs_of_the_api();
    let typed: BTreeSet<String> = tally.typed.keys().cloned().collect();
    let missing: Vec<&String> = api.difference(&typed).collect();
    let unknown: Vec<&String> = typed.difference(&api).collect();
    let typed_entries: usize = tally.typed.values().sum();
    let raw_entries: usize = tally.raw.values().sum();
    println!(
        "bad-input corpus: {} RPCs, {} entries ({typed_entries} typed, {raw_entries} raw; {} \
         documented as accepted) on {backend:?}: {}",
        api.len(),
        typed_entries + raw_entries,
        tally.accepted,
        if tally.problems.is_empty() {
            "all answered as documented".to_string()
        } else {
            format!("{} DISAGREEMENTS", tally.problems.len())
        }
    );
    for rpc in &api {
        println!(
            "  {rpc}: {} typed + {} raw",
            tally.typed.get(rpc).copied().unwrap_or_default(),
            tally.raw.get(rpc).copied().unwrap_or_default()
        );
    }
    assert!(
        missing.is_empty(),
        "RPCs without corpus entries: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "corpus entries for unknown RPCs: {unknown:?}"
    );
    assert!(
        tally.problems.is_empty(),
        "{} answers disagree with the documented ones:\n{}",
        tally.problems.len(),
        tally.problems.join("\n")
    );
}

/// The judge itself can fail: wrong codes, missing ErrorInfo and unnamed fields are caught.
#[test]
fn the_judge_catches_what_it_looks_for() {
    use std::collections::HashMap;
    use tonic_types::{ErrorDetails, FieldViolation};
    let mut details = ErrorDetails::with_error_info("INVALID_ARGUMENT", "tenantry", HashMap::new());
    details.set_bad_request(vec![FieldViolation::new("name", "bad")]);
    let named = Err(Status::with_error_details(
        Code::InvalidArgument,
        "name: bad",
        details,
    ));
    assert_eq!(judge(&named, &Expect::Invalid("name".into())), None);
    assert!(judge(&named, &Expect::Invalid("parent".into())).is_some());
    assert!(judge(&named, &Expect::Code(Code::NotFound)).is_some());
    assert!(judge(&named, &Expect::Accepted).is_some());
    let bare = Err(Status::invalid_argument("name: bad"));
    assert!(judge(&bare, &Expect::Invalid("name".into())).is_some());
    assert!(judge(&bare, &Expect::Code(Code::InvalidArgument)).is_some());
    let internal = Err(Status::internal("boom"));
    assert!(judge(&internal, &Expect::Code(Code::NotFound)).is_some());
    assert!(judge(&Ok(()), &Expect::Invalid("name".into())).is_some());
    assert_eq!(judge(&Ok(()), &Expect::Accepted), None);
}
