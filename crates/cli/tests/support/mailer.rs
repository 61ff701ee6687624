//! What the invitation mailer's process tests share: customer-registry and membership as
//! `tenantry serve` processes on SQLite, the invitation service's settings (PostgreSQL, the
//! slow SMTP server), RabbitMQ under a fresh prefix, and the account `globex` to invite to.

#![allow(dead_code)]

use std::time::Duration;

use tenantry_proto::registry::v1::CreateAccountRequest;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;

use super::{
    ServeProcess, SlowSmtpServer, TestResources, authorized, free_port, operator_token,
    with_database,
};

/// A setting of a `tenantry serve` process: variable and value.
pub type Setting = (&'static str, String);

/// The running peers and the invitation service's settings. Fields drop in order: the
/// processes before the SMTP server and the resources (databases, queues) they use.
pub struct MailerCluster {
    pub registry: ServeProcess,
    pub membership: ServeProcess,
    pub smtp: SlowSmtpServer,
    invitation_settings: Vec<Setting>,
    jwt_secret: String,
    pub resources: TestResources,
}

impl MailerCluster {
    /// Starts the peers for the test `name` with `jwt_secret` and `internal_secret`, every
    /// process also getting `shared`, the invitation service also `invitation`; the SMTP
    /// server answers each message after `smtp_delay`. Creates the account `globex`.
    pub async fn start(
        name: &str,
        (amqp, postgres): (&str, &str),
        (jwt_secret, internal_secret): (&str, &str),
        smtp_delay: Duration,
        shared: &[Setting],
        invitation: &[Setting],
    ) -> Self {
        let resources = TestResources::create(name, amqp, postgres).await;
        let dir = resources.dir.clone();
        let sqlite = |file: &str| format!("sqlite://{}?mode=rwc", dir.join(file).display());
        let smtp = SlowSmtpServer::start(&dir, smtp_delay).await;
        // The peers listen on ports chosen up front, since each names the other.
        let (registry_port, membership_port) = (free_port(), free_port());
        let mut common = vec![
            ("TENANTRY_JWT_SECRET", jwt_secret.to_string()),
            ("TENANTRY_INTERNAL_SECRET", internal_secret.to_string()),
            ("TENANTRY_AMQP_URL", amqp.to_string()),
            ("TENANTRY_AMQP_PREFIX", resources.prefix.clone()),
            (
                "TENANTRY_REGISTRY_URL",
                format!("http://127.0.0.1:{registry_port}"),
            ),
            (
                "TENANTRY_MEMBERSHIP_URL",
                format!("http://127.0.0.1:{membership_port}"),
            ),
        ];
        common.extend_from_slice(shared);
        let with = |extra: Vec<Setting>| {
            let mut settings = common.clone();
            settings.extend(extra);
            settings
        };
        let registry_settings = with(vec![("TENANTRY_DATABASE_URL", sqlite("registry.db"))]);
        let membership_settings = with(vec![("TENANTRY_DATABASE_URL", sqlite("membership.db"))]);
        let (registry, membership) = tokio::join!(
            ServeProcess::start(
                "customer-registry",
                "tenantry.registry.v1.CustomerRegistryService",
                registry_port,
                &dir,
                "registry",
                &registry_settings,
            ),
            ServeProcess::start(
                "membership",
                "tenantry.membership.v1.MembershipService",
                membership_port,
                &dir,
                "membership",
                &membership_settings,
            ),
        );
        let mut invitation_settings = with(vec![
            (
                "TENANTRY_DATABASE_URL",
                with_database(postgres, &resources.database),
            ),
            ("TENANTRY_SMTP_URL", smtp.url()),
        ]);
        invitation_settings.extend_from_slice(invitation);
        let cluster = Self {
            registry,
            membership,
            smtp,
            invitation_settings,
            jwt_secret: jwt_secret.to_string(),
            resources,
        };
        CustomerRegistryServiceClient::new(cluster.registry.channel().await)
            .create_account(authorized(
                CreateAccountRequest {
                    account_id: "globex".into(),
                    display_name: "Globex Corporation".into(),
                    request_id: String::new(),
                },
                &cluster.operator_token(),
            ))
            .await
            .expect("create the account");
        cluster
    }

    /// An operator's bearer token for these processes.
    pub fn operator_token(&self) -> String {
        operator_token(&self.jwt_secret)
    }

    /// Starts a `tenantry serve invitation` process on the shared database and queues, its
    /// log under `log_name`.
    pub async fn start_invitation(&self, log_name: &'static str) -> ServeProcess {
        ServeProcess::start(
            "invitation",
            "tenantry.invitation.v1.InvitationService",
            free_port(),
            &self.resources.dir,
            log_name,
            &self.invitation_settings,
        )
        .await
    }

    /// Stops the peers with SIGTERM; each must exit zero within `timeout`.
    pub async fn stop_peers(self, timeout: Duration) {
        for peer in [self.registry, self.membership] {
            let (exited_zero, _) = peer.terminate(timeout).await;
            assert!(exited_zero, "a peer exited non-zero");
        }
    }
}
