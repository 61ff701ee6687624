//! The world the authorization matrix runs in: two partners with one customer each, people in
//! every role, a pending invitation with its e-mailed link, a delivered message, a pending
//! access request and the customer's first audit entry — plus the throwaway targets built per
//! cell for calls that change what they touch.

use std::time::Duration;

use tenantry_e2e::{
    add_member, create_customer, fresh_id, inbox_until, invite, partner_with_owner, send_message,
};
use tenantry_proto::audit::v1::GetAuditEntryRequest;
use tenantry_proto::membership::v1::{
    AccessRequest, AddMyselfRequest, CreateAccessRequestRequest, Role,
};
use tenantry_proto::notification::v1::ReadPolicy;
use tenantry_proto::registry::v1::{CreateAccountRequest, DisableAccountRequest};
use tenantry_testkit::{TestCluster, TestUser};

/// A secret no cluster trusts: a token signed with it is forged.
const FOREIGN_SECRET: &str = "not-the-cluster-secret";
/// Accounts that never exist: the twins of real targets.
const MISSING_PARTNER: &str = "ghost-partner";
const MISSING_CUSTOMER: &str = "ghost-customer";
/// A sequence number no audit log of the world reaches.
const MISSING_SEQUENCE: i64 = 999_999;
/// How long the time-bound memberships of `Setup::Timed` last: far longer than a matrix run.
const TIMED_ACCESS_SECONDS: i64 = 3_600;

/// One column of the matrix: a caller and the bearer token it presents (`None`: no header).
#[derive(Debug)]
pub struct Identity {
    /// The column heading.
    pub label: &'static str,
    /// The token sent, if any.
    pub token: Option<String>,
}

/// Everyone the world knows.
#[derive(Debug)]
pub struct People {
    /// A platform operator.
    pub operator: TestUser,
    /// OWNER, ADMIN, EMPLOYEE of partner "alpha".
    pub partner: [TestUser; 3],
    /// OWNER, ADMIN, EMPLOYEE of partner "bravo".
    pub other_partner: [TestUser; 3],
    /// OWNER, ADMIN, EMPLOYEE of alpha's customer, the target of account-scoped calls.
    pub customer: [TestUser; 3],
    /// OWNER of bravo's customer: strong somewhere else.
    pub other_customer_owner: TestUser,
    /// A valid user who is a member of nothing; the invitee of every AcceptInvitation target.
    pub outsider: TestUser,
    /// An EMPLOYEE of every customer target whose membership the member RPCs are about.
    pub dora: TestUser,
    /// The e-mail of the world's pending invitation; never calls.
    pub invitee: TestUser,
}

const ROLES: [Role; 3] = [Role::Owner, Role::Admin, Role::Employee];

impl People {
    fn new() -> Self {
        let trio = |prefix: &str| {
            ["owner", "admin", "employee"].map(|role| TestUser::new(&format!("{prefix}-{role}")))
        };
        Self {
            operator: TestUser::operator("ops"),
            partner: trio("alpha"),
            other_partner: trio("bravo"),
            customer: trio("customer"),
            other_customer_owner: TestUser::new("elsewhere-owner"),
            outsider: TestUser::new("outsider"),
            dora: TestUser::new("dora"),
            invitee: TestUser::new("ivy"),
        }
    }
}

/// The names one cell's calls are about. Partner-scoped calls use `partner`, account-scoped ones
/// `account`, the rest the named child resource.
#[derive(Clone, Debug)]
pub struct Target {
    /// The partner: `accounts/{id}`.
    pub partner: String,
    /// The customer (or, for PromoteToPartner, a standalone account).
    pub account: String,
    /// Dora's membership in `account` (for `Setup::Timed`: the partner EMPLOYEE's time-bound
    /// one).
    pub member: String,
    /// An invitation of `account` (role EMPLOYEE).
    pub invitation: String,
    /// The secret of an invitation link.
    pub link: String,
    /// A message `partner` sent to `account`, delivered to its members.
    pub message: String,
    /// The first entry of `account`'s audit log (`account.created`).
    pub audit_entry: String,
    /// A PENDING access request of `account` (for `Setup::Req`: the partner EMPLOYEE's own).
    pub access_request: String,
    /// CreateAccount's identifier; `None`: a fresh one per call.
    pub create_id: Option<String>,
    /// Display names of the target's own accounts: no refusal may carry them.
    pub secrets: Vec<String>,
}

/// `accounts/{id}/…` with the account replaced by `account_id`.
fn reparent(name: &str, account_id: &str) -> String {
    let rest = name
        .strip_prefix("accounts/")
        .and_then(|rest| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or_default();
    format!("accounts/{account_id}{rest}")
}

impl Target {
    /// `users/{sub}` of the member the target names.
    pub fn member_user(&self) -> String {
        let sub = self.member.rsplit('/').next().unwrap_or_default();
        format!("users/{sub}")
    }

    /// The same call about accounts that do not exist (their members, invitations and
    /// messages with them), an unknown invitation link, and — for CreateAccount, whose resource
    /// is the identifier — one that is taken.
    pub fn missing_account(&self, taken_id: &str) -> Self {
        Self {
            partner: reparent(&self.partner, MISSING_PARTNER),
            account: reparent(&self.account, MISSING_CUSTOMER),
            member: reparent(&self.member, MISSING_CUSTOMER),
            invitation: reparent(&self.invitation, MISSING_CUSTOMER),
            link: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            message: reparent(&self.message, MISSING_PARTNER),
            audit_entry: reparent(&self.audit_entry, MISSING_CUSTOMER),
            access_request: reparent(&self.access_request, MISSING_CUSTOMER),
            create_id: Some(taken_id.to_string()),
            secrets: self.secrets.clone(),
        }
    }

    /// The same accounts, with a member, an invitation, a message, an audit entry and an
    /// access request that do not exist.
    pub fn missing_child(&self) -> Self {
        Self {
            member: format!("{}/members/{}", self.account, fresh_id("nobody")),
            invitation: format!("{}/invitations/{}", self.account, uuid::Uuid::new_v4()),
            message: format!("{}/messages/{}", self.partner, uuid::Uuid::new_v4()),
            audit_entry: format!("{}/auditEntries/{MISSING_SEQUENCE}", self.account),
            access_request: format!("{}/accessRequests/{}", self.account, uuid::Uuid::new_v4()),
            ..self.clone()
        }
    }
}

/// How a cell's target is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// The shared world (the call changes nothing another cell depends on).
    World,
    /// A fresh standalone account.
    Solo,
    /// A fresh customer of alpha with the customer people in their roles and dora.
    Cust,
    /// Like `Cust`, then disabled.
    Off,
    /// Like `Cust`, with a pending invitation.
    Inv,
    /// Like `Cust`, with a pending invitation of the outsider and its e-mailed link.
    Link,
    /// Like `Cust`, which the partner EMPLOYEE joined for an hour (AddMyself with an
    /// `access_duration`; ADMIN there): the member the calls are about is that time-bound
    /// membership, so the partner EMPLOYEE column is the member themself.
    Timed,
    /// Like `Cust`, with a PENDING access request the partner EMPLOYEE made for themself
    /// (AddMyself's role, ADMIN): that column is both its requester and its subject, and the
    /// customer's OWNER and ADMIN are the people asked to approve it.
    Req,
}

/// The shared world.
#[derive(Debug)]
pub struct World {
    /// Everyone.
    pub people: People,
    /// The world's target: alpha and its customer.
    pub target: Target,
    /// An identifier that is taken.
    pub taken_id: String,
    /// Strings no refusal may carry: display names, e-mail addresses, the message.
    pub secrets: Vec<String>,
}

impl World {
    /// Builds the world on `cluster` and waits until its message reached every recipient and
    /// the customer's audit log holds its first entry.
    pub async fn build(cluster: &TestCluster) -> Self {
        let mut people = People::new();
        let op = &people.operator;
        let alpha = partner_with_owner(cluster, op, "alpha", "alpha-owner").await;
        let bravo = partner_with_owner(cluster, op, "bravo", "bravo-owner").await;
        people.partner[0] = alpha.owner;
        people.other_partner[0] = bravo.owner;
        let customer = create_customer(cluster, op, &alpha.account.name, "alpha-customer")
            .await
            .expect("operator creates alpha's customer");
        let elsewhere = create_customer(cluster, op, &bravo.account.name, "bravo-customer")
            .await
            .expect("operator creates bravo's customer");
        // The OWNERs came with their partners; the ADMINs and EMPLOYEEs join them.
        for (partner, trio) in [
            (&alpha.account.name, &people.partner),
            (&bravo.account.name, &people.other_partner),
        ] {
            for (user, role) in trio.iter().zip(ROLES).skip(1) {
                add_member(cluster, op, partner, user, role)
                    .await
                    .expect("operator adds a partner member");
            }
        }
        add_member(
            cluster,
            op,
            &elsewhere.name,
            &people.other_customer_owner,
            Role::Owner,
        )
        .await
        .expect("operator adds the other customer's owner");
        let mut target = Self::populate(cluster, &people, &alpha.account.name, &customer).await;

        let invitation = invite(
            cluster,
            op,
            &customer.name,
            &people.invitee.email,
            Role::Employee,
        )
        .await
        .expect("operator invites ivy");
        target.invitation = invitation.name;
        target.link = link_for(cluster, &people.invitee, &customer.display_name).await;
        let message = send_message(
            cluster,
            &people.partner[0],
            &alpha.account.name,
            &[&customer.name],
            "Alpha maintenance window",
            ReadPolicy::AllMustRead,
        )
        .await
        .expect("alpha's owner sends a message");
        for recipient in &people.customer {
            inbox_until(cluster, recipient, "the world's message", |items| {
                items.iter().any(|item| item.message == message.name)
            })
            .await;
        }
        target.message = message.name;
        // The customer's OWNER asks for ADMIN for the outsider: the "no membership" column is
        // the subject of the world's request (and may see it), the customer's ADMIN is asked
        // to approve it.
        target.access_request = request_access(
            cluster,
            &people.customer[0],
            &customer.name,
            &people.outsider,
        )
        .await
        .name;
        // The audit consumer appends asynchronously: entry 1 (`account.created`) must be there
        // before GetAuditEntry and WatchAuditEntries are called.
        audit_entry_until(cluster, op, &target.audit_entry).await;

        let mut secrets = vec![message.title, message.body];
        for account in [&alpha.account, &bravo.account, &customer, &elsewhere] {
            secrets.push(account.display_name.clone());
        }
        let everyone = people
            .partner
            .iter()
            .chain(&people.other_partner)
            .chain(&people.customer)
            .chain([
                &people.operator,
                &people.other_customer_owner,
                &people.outsider,
                &people.dora,
                &people.invitee,
            ]);
        secrets.extend(everyone.map(|user| user.email.clone()));
        Self {
            people,
            target,
            taken_id: elsewhere.account_id,
            secrets,
        }
    }

    /// Adds the customer people (in their roles) and dora to `customer`; the target naming it.
    async fn populate(
        cluster: &TestCluster,
        people: &People,
        partner: &str,
        customer: &tenantry_proto::registry::v1::Account,
    ) -> Target {
        let op = &people.operator;
        for (user, role) in people.customer.iter().zip(ROLES) {
            add_member(cluster, op, &customer.name, user, role)
                .await
                .expect("operator adds a customer member");
        }
        add_member(cluster, op, &customer.name, &people.dora, Role::Employee)
            .await
            .expect("operator adds dora");
        Target {
            partner: partner.to_string(),
            account: customer.name.clone(),
            member: format!("{}/members/{}", customer.name, people.dora.sub),
            invitation: String::new(),
            link: String::new(),
            message: String::new(),
            audit_entry: format!("{}/auditEntries/1", customer.name),
            access_request: String::new(),
            create_id: None,
            secrets: vec![customer.display_name.clone()],
        }
    }

    /// The target of one cell.
    pub async fn target(&self, cluster: &TestCluster, setup: Setup) -> Target {
        let op = &self.people.operator;
        if setup == Setup::World {
            return self.target.clone();
        }
        if setup == Setup::Solo {
            let account = cluster
                .registry_as(op)
                .create_account(CreateAccountRequest {
                    account_id: fresh_id("solo"),
                    display_name: format!("Solo {}", fresh_id("display")),
                    request_id: String::new(),
                })
                .await
                .expect("operator creates a standalone account")
                .into_inner()
                .account
                .expect("account");
            return Target {
                account: account.name,
                secrets: vec![account.display_name],
                ..self.target.clone()
            };
        }
        let customer = create_customer(cluster, op, &self.target.partner, &fresh_id("fresh"))
            .await
            .expect("operator creates a fresh customer");
        let mut target = Target {
            message: self.target.message.clone(),
            ..Self::populate(cluster, &self.people, &self.target.partner, &customer).await
        };
        match setup {
            Setup::Off => {
                cluster
                    .registry_as(op)
                    .disable_account(DisableAccountRequest {
                        name: customer.name.clone(),
                        etag: String::new(),
                    })
                    .await
                    .expect("operator disables the fresh customer");
            }
            Setup::Inv | Setup::Link => {
                let invitee = match setup {
                    Setup::Inv => &self.people.invitee,
                    _ => &self.people.outsider,
                };
                let invitation =
                    invite(cluster, op, &customer.name, &invitee.email, Role::Employee)
                        .await
                        .expect("operator invites to the fresh customer");
                target.invitation = invitation.name;
                if setup == Setup::Link {
                    target.link = link_for(cluster, invitee, &customer.display_name).await;
                }
            }
            Setup::Timed => {
                let employee = &self.people.partner[2];
                let joined = cluster
                    .membership_as(employee)
                    .add_myself(AddMyselfRequest {
                        account: customer.name.clone(),
                        access_duration: Some(prost_types::Duration {
                            seconds: TIMED_ACCESS_SECONDS,
                            nanos: 0,
                        }),
                    })
                    .await
                    .expect("the partner EMPLOYEE joins the fresh customer for an hour")
                    .into_inner()
                    .member
                    .expect("member");
                assert!(joined.expire_time.is_some(), "a time-bound membership");
                target.member = joined.name;
            }
            Setup::Req => {
                let employee = &self.people.partner[2];
                target.access_request = request_access(cluster, employee, &customer.name, employee)
                    .await
                    .name;
            }
            Setup::World | Setup::Solo | Setup::Cust => {}
        }
        target
    }

    /// The columns of the matrix, in order.
    pub fn identities(&self, cluster: &TestCluster) -> Vec<Identity> {
        let people = &self.people;
        let user = |label, user: &TestUser| Identity {
            label,
            token: Some(user.token()),
        };
        // The broken tokens are the customer OWNER's: only the token is wrong.
        let owner = &people.customer[0];
        let broken = |label, token| Identity {
            label,
            token: Some(token),
        };
        vec![
            user("operator", &people.operator),
            user("partner OWNER", &people.partner[0]),
            user("partner ADMIN", &people.partner[1]),
            user("partner EMPLOYEE", &people.partner[2]),
            user("other partner OWNER", &people.other_partner[0]),
            user("other partner ADMIN", &people.other_partner[1]),
            user("other partner EMPLOYEE", &people.other_partner[2]),
            user("customer OWNER", &people.customer[0]),
            user("customer ADMIN", &people.customer[1]),
            user("customer EMPLOYEE", &people.customer[2]),
            user("other customer OWNER", &people.other_customer_owner),
            user("no membership", &people.outsider),
            Identity {
                label: "service identity",
                token: Some(cluster.service_token("invitation")),
            },
            Identity {
                label: "no token",
                token: None,
            },
            broken(
                "expired token",
                owner.token_with(|claims| {
                    claims.iat -= 7200;
                    claims.exp = claims.iat + 3600;
                }),
            ),
            broken(
                "wrong signing key",
                owner.token_signed_with(FOREIGN_SECRET, |_| {}),
            ),
            broken(
                "wrong audience",
                owner.token_with(|claims| claims.aud = "someone-else".to_string()),
            ),
        ]
    }
}

/// A PENDING access request `requester` makes in `account`: ADMIN for `subject`, without end
/// (no policy is set: two approvals, the requester's the first).
async fn request_access(
    cluster: &TestCluster,
    requester: &TestUser,
    account: &str,
    subject: &TestUser,
) -> AccessRequest {
    cluster
        .membership_as(requester)
        .create_access_request(CreateAccessRequestRequest {
            parent: account.to_string(),
            access_request: Some(AccessRequest {
                subject: subject.resource_name(),
                role: Role::Admin as i32,
                reason: "On call for the matrix.".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_or_else(|status| {
            panic!("{} asks for access in {account}: {status:?}", requester.sub)
        })
        .into_inner()
        .access_request
        .expect("access request")
}

/// The link of the newest invitation e-mail to `invitee` about `account_display_name`.
async fn link_for(cluster: &TestCluster, invitee: &TestUser, account_display_name: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let link = cluster
            .mail_files()
            .into_iter()
            .filter(|mail| {
                mail.to.contains(&invitee.email) && mail.subject.contains(account_display_name)
            })
            .find_map(|mail| mail.accept_token());
        if let Some(link) = link {
            return link;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invitation e-mail to {} about {account_display_name}",
            invitee.email
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the audit entry `name` exists (asked as `operator`).
async fn audit_entry_until(cluster: &TestCluster, operator: &TestUser, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut trail = cluster.audit_as(operator);
    loop {
        let answer = trail
            .get_audit_entry(GetAuditEntryRequest {
                name: name.to_string(),
            })
            .await;
        match answer {
            Ok(_) => return,
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => panic!("GetAuditEntry {name} as the operator: {status:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the audit log never got {name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
