//! Who a test calls as: user tokens signed with the secret test clusters trust (or a forged
//! one), and gRPC clients that send one identity's bearer token on every call.

use tenantry_platform::auth::{DevTokenClaims, mint_user_token, unix_now};
use tenantry_proto::audit::v1::audit_service_client::AuditServiceClient;
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::TEST_JWT_SECRET;

/// Adds a fixed bearer token to every call.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// `authorization: Bearer {token}` on every call (`None`: no header at all).
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|token| {
            format!("Bearer {token}")
                .parse()
                .expect("token is a valid header")
        }))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A registry client calling as one identity.
pub type RegistryClient = CustomerRegistryServiceClient<InterceptedService<Channel, Bearer>>;
/// A membership client calling as one identity.
pub type MembershipClient = MembershipServiceClient<InterceptedService<Channel, Bearer>>;
/// An invitation client calling as one identity.
pub type InvitationClient = InvitationServiceClient<InterceptedService<Channel, Bearer>>;
/// A notification client calling as one identity.
pub type NotificationClient = NotificationServiceClient<InterceptedService<Channel, Bearer>>;

/// An audit client calling as one identity.
pub type AuditClient = AuditServiceClient<InterceptedService<Channel, Bearer>>;

/// A user token for tests.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// The `sub`.
    pub sub: String,
    /// The e-mail address.
    pub email: String,
    /// Whether the token carries the operator role.
    pub operator: bool,
}

impl TestUser {
    /// A person with a unique-looking id derived from `name`.
    pub fn new(name: &str) -> Self {
        Self {
            sub: format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            email: format!("{name}@example.com"),
            operator: false,
        }
    }

    /// A platform operator.
    pub fn operator(name: &str) -> Self {
        Self {
            operator: true,
            ..Self::new(name)
        }
    }

    /// `users/{sub}`.
    pub fn resource_name(&self) -> String {
        format!("users/{}", self.sub)
    }

    /// A valid token for this user.
    pub fn token(&self) -> String {
        self.token_with(|_| {})
    }

    /// A token for this user with adjusted claims (expired, wrong audience, …).
    pub fn token_with(&self, adjust: impl FnOnce(&mut DevTokenClaims)) -> String {
        self.token_signed_with(TEST_JWT_SECRET, adjust)
    }

    /// A token for this user signed with `secret` instead of the one test clusters trust (a
    /// forged token, when `secret` differs), with adjusted claims.
    pub fn token_signed_with(
        &self,
        secret: &str,
        adjust: impl FnOnce(&mut DevTokenClaims),
    ) -> String {
        let now = unix_now();
        let mut claims = DevTokenClaims {
            sub: self.sub.clone(),
            email: Some(self.email.clone()),
            email_verified: Some(true),
            given_name: None,
            family_name: None,
            roles: if self.operator {
                vec!["tenantry-operator".to_string()]
            } else {
                Vec::new()
            },
            iss: "tenantry".to_string(),
            aud: "tenantry".to_string(),
            exp: now + 3600,
            iat: now,
        };
        adjust(&mut claims);
        mint_user_token(secret, &claims).expect("mint token")
    }
}
