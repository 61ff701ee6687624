//! Configuration shared by every service. Values come from, in rising priority: the documented
//! defaults below, the environment (`TENANTRY_*`), and command-line flags. Secrets are read from
//! the environment or from files only (see [`crate::secrets`]), so they never show in a process
//! list.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// The HS256 secret `tenantry up` and `tenantry token` fall back to when none is configured. It
/// is public knowledge, so `tenantry serve` refuses to start with it.
pub const DEV_JWT_SECRET: &str = "tenantry-development-secret-do-not-use-in-production";

/// How callers are authenticated (DESIGN.md §5).
#[derive(Args, Clone)]
pub struct AuthConfig {
    /// HS256 shared secret that signs user tokens (development and tests).
    #[arg(skip = crate::secrets::from_env("TENANTRY_JWT_SECRET"))]
    pub jwt_secret: Option<String>,
    /// JWKS URL of the identity provider (RS256/ES256 user tokens in production).
    #[arg(long = "jwks-url", env = "TENANTRY_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Required `iss` of user tokens.
    #[arg(
        long = "jwt-issuer",
        env = "TENANTRY_JWT_ISSUER",
        default_value = "tenantry"
    )]
    pub issuer: String,
    /// Required `aud` of user tokens.
    #[arg(
        long = "jwt-audience",
        env = "TENANTRY_JWT_AUDIENCE",
        default_value = "tenantry"
    )]
    pub audience: String,
    /// Claim holding the caller's roles; a dotted path reaches into objects
    /// (`realm_access.roles`).
    #[arg(
        long = "roles-claim",
        env = "TENANTRY_ROLES_CLAIM",
        default_value = "roles"
    )]
    pub roles_claim: String,
    /// The role that makes a caller a platform operator.
    #[arg(
        long = "operator-role",
        env = "TENANTRY_OPERATOR_ROLE",
        default_value = "tenantry-operator"
    )]
    pub operator_role: String,
    /// HS256 secret that signs service-to-service tokens; every service of a cluster shares it.
    /// Also keys page tokens and the invitation page's cookies.
    #[arg(skip = crate::secrets::from_env("TENANTRY_INTERNAL_SECRET"))]
    pub internal_secret: Option<String>,
    /// The internal secret being rotated away from (or towards): also accepted on service tokens,
    /// page tokens and page cookies, never used to sign. See the README's rotation procedure.
    #[arg(skip = crate::secrets::from_env("TENANTRY_INTERNAL_SECRET_PREVIOUS"))]
    pub internal_secret_previous: Option<String>,
    /// Verified tokens remembered (by their SHA-256) until they expire, so repeated calls skip the
    /// signature check; 0 turns the cache off.
    #[arg(
        long = "token-cache-size",
        env = "TENANTRY_TOKEN_CACHE_SIZE",
        default_value_t = DEFAULT_TOKEN_CACHE_SIZE
    )]
    pub token_cache_size: usize,
    /// Seconds between two scheduled fetches of the JWKS (each jittered by ±10 %): a key removed
    /// from the provider's JWKS is refused by every replica within this (+10 %, + the fetch).
    /// Keys not fetched for three intervals (the provider is down) are stale: tokens verified
    /// with them are verified again instead of being served from the token cache.
    #[arg(
        long = "jwks-refresh-seconds",
        env = "TENANTRY_JWKS_REFRESH_SECONDS",
        default_value_t = crate::auth::DEFAULT_JWKS_REFRESH_SECONDS,
        value_parser = clap::value_parser!(u64).range(5..=3600)
    )]
    pub jwks_refresh_seconds: u64,
}

/// Secrets show as `***`, so a configuration can be logged.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &hidden(&self.jwt_secret))
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("roles_claim", &self.roles_claim)
            .field("operator_role", &self.operator_role)
            .field("internal_secret", &hidden(&self.internal_secret))
            .field(
                "internal_secret_previous",
                &hidden(&self.internal_secret_previous),
            )
            .field("token_cache_size", &self.token_cache_size)
            .field("jwks_refresh_seconds", &self.jwks_refresh_seconds)
            .finish()
    }
}

/// Default of [`AuthConfig::token_cache_size`].
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 10_000;

impl AuthConfig {
    /// A configuration that trusts HS256 user tokens signed with `jwt_secret`.
    pub fn with_secrets(jwt_secret: &str, internal_secret: &str) -> Self {
        Self {
            jwt_secret: Some(jwt_secret.to_string()),
            jwks_url: None,
            issuer: "tenantry".to_string(),
            audience: "tenantry".to_string(),
            roles_claim: "roles".to_string(),
            operator_role: "tenantry-operator".to_string(),
            internal_secret: Some(internal_secret.to_string()),
            internal_secret_previous: None,
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
            jwks_refresh_seconds: crate::auth::DEFAULT_JWKS_REFRESH_SECONDS,
        }
    }
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging.
#[derive(Args, Clone, Debug)]
pub struct LogConfig {
    /// Log format.
    #[arg(long = "log-format", env = "TENANTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub format: LogFormat,
    /// Log filter in `tracing` syntax (`RUST_LOG` is honoured too).
    #[arg(long = "log", env = "TENANTRY_LOG", default_value = "info,sqlx=warn")]
    pub filter: String,
}

/// The gRPC server.
#[derive(Args, Clone, Debug)]
pub struct ServerConfig {
    /// Address the gRPC port listens on.
    #[arg(
        long = "listen",
        env = "TENANTRY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: std::net::SocketAddr,
    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(
        long = "max-request-bytes",
        env = "TENANTRY_MAX_REQUEST_BYTES",
        default_value_t = 256 * 1024
    )]
    pub max_request_bytes: usize,
    /// Largest request metadata (HTTP/2 header list: names, values and 32 bytes each, the
    /// authorization header included) accepted, in bytes; larger ones get RESOURCE_EXHAUSTED
    /// on their own stream, other calls on the connection go on.
    #[arg(
        long = "max-metadata-bytes",
        env = "TENANTRY_MAX_METADATA_BYTES",
        default_value_t = crate::server::DEFAULT_MAX_METADATA_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=1_048_576)
    )]
    pub max_metadata_bytes: u32,
    /// Seconds in-flight calls get to finish after SIGTERM before the process exits.
    #[arg(
        long = "shutdown-grace-seconds",
        env = "TENANTRY_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 20
    )]
    pub shutdown_grace_seconds: u64,
    /// Seconds a client connection to the gRPC port lives before the server closes it
    /// gracefully (calls in flight finish; the client reconnects, so L4 load balancing evens
    /// out); long-lived streams are not cut.
    #[arg(
        long = "max-connection-age-seconds",
        env = "TENANTRY_MAX_CONNECTION_AGE_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_connection_age_seconds: u64,
    /// Seconds between two DNS look-ups of a `dns:///host:port` peer URL (sooner after a
    /// replica refused a connection).
    #[arg(
        long = "peer-resolve-seconds",
        env = "TENANTRY_PEER_RESOLVE_SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub peer_resolve_seconds: u64,
    /// Address of the admin HTTP port (`/metrics`, `/livez`, `/readyz`); none by default (use
    /// `0.0.0.0:9090` in a container).
    #[arg(long = "admin-listen", env = "TENANTRY_ADMIN_LISTEN")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// TLS on the gRPC port and towards peers.
    #[command(flatten)]
    pub tls: TlsConfig,
}

impl ServerConfig {
    /// Makes the process-wide connection settings take effect: the maximum connection age and
    /// metadata size of the gRPC servers ([`crate::server::set_max_connection_age`],
    /// [`crate::server::set_max_metadata_bytes`]) and the re-resolve
    /// interval of `dns:///` peers ([`crate::clients::set_default_resolve_interval`]). Call it
    /// before starting servers and making channels.
    pub fn apply_connection_settings(&self) {
        crate::server::set_max_connection_age(std::time::Duration::from_secs(
            self.max_connection_age_seconds,
        ));
        crate::server::set_max_metadata_bytes(self.max_metadata_bytes);
        crate::clients::set_default_resolve_interval(std::time::Duration::from_secs(
            self.peer_resolve_seconds,
        ));
    }
}

/// TLS (see [`crate::tls`]): the gRPC port's certificate and key, and the CA that `https://`
/// peers are verified against.
#[derive(Args, Clone, Debug, Default)]
pub struct TlsConfig {
    /// PEM certificate chain of the gRPC port; with --tls-key the port accepts TLS only.
    #[arg(
        id = "tls_cert",
        long = "tls-cert",
        env = "TENANTRY_TLS_CERT",
        requires = "tls_key"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        id = "tls_key",
        long = "tls-key",
        env = "TENANTRY_TLS_KEY",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,
    /// PEM CA bundle for `https://` peer URLs (and this process's own port); default: the
    /// system roots.
    #[arg(id = "tls_ca", long = "tls-ca", env = "TENANTRY_TLS_CA")]
    pub ca: Option<PathBuf>,
}

/// Where the data of the embedded default lives.
#[derive(Args, Clone, Debug)]
pub struct DataDirConfig {
    /// Directory for the SQLite files (and e-mails) of `tenantry up`.
    #[arg(long = "data-dir", env = "TENANTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}
