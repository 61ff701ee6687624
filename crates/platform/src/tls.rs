//! Optional TLS on the gRPC port (rustls with the ring provider) and towards `https://` peers.
//!
//! The port speaks TLS only when both `TENANTRY_TLS_CERT` and `TENANTRY_TLS_KEY` name PEM
//! files; then nothing plaintext is accepted. Calls to peers use TLS when the peer URL is
//! `https://`, trusting `TENANTRY_TLS_CA` (a PEM bundle) or else the system roots. A process
//! that serves a peer itself (`tenantry up`) calls its own port over TLS too, expecting the
//! certificate to name [`OWN_SERVER_NAME`].

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

/// The name a process expects in its own certificate when it calls its own port.
pub const OWN_SERVER_NAME: &str = "localhost";

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A configured file cannot be read.
    #[error("cannot read the TLS {what} {}", path.display())]
    Read {
        /// Which file (certificate, key, CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Only one of certificate and key is set.
    #[error("TENANTRY_TLS_CERT and TENANTRY_TLS_KEY go together: set both or neither")]
    Incomplete,
    /// The certificate and key do not make a usable server identity.
    #[error("the TLS certificate or key is not usable")]
    Invalid(#[source] tonic::transport::Error),
}

/// Loaded TLS settings of a node.
#[derive(Clone, Debug, Default)]
pub struct NodeTls {
    /// The gRPC port's identity; `None`: plaintext.
    pub server: Option<ServerTlsConfig>,
    /// What `https://` peers are verified against; `None`: the system roots.
    pub ca: Option<Certificate>,
}

impl NodeTls {
    /// Whether the gRPC port speaks TLS.
    pub fn serves_tls(&self) -> bool {
        self.server.is_some()
    }

    /// The client side for a peer at `url`: `None` for `http://` and `dns:///`; for `https://`
    /// (also a list of them) and `dns+https:///` the CA (or the system roots), expecting
    /// `server_name` when given, else the URL's host (of each entry; the DNS name).
    pub fn client_for(&self, url: &str, server_name: Option<&str>) -> Option<ClientTlsConfig> {
        let url = url.trim_start();
        if !(url.starts_with("https://") || url.starts_with("dns+https:")) {
            return None;
        }
        let config = match &self.ca {
            Some(ca) => ClientTlsConfig::new().ca_certificate(ca.clone()),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        Some(match server_name {
            Some(name) => config.domain_name(name),
            None => config,
        })
    }
}

impl TlsConfig {
    /// Reads the configured files; checks that certificate and key form a server identity.
    pub fn load(&self) -> Result<NodeTls, TlsSetupError> {
        let server = match (&self.cert, &self.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read("certificate", cert)?, read("private key", key)?);
                let config = ServerTlsConfig::new().identity(identity);
                // Builds the acceptor once, so a bad pair fails at start-up, not at the first
                // connection.
                tonic::transport::Server::builder()
                    .tls_config(config.clone())
                    .map_err(TlsSetupError::Invalid)?;
                Some(config)
            }
            _ => return Err(TlsSetupError::Incomplete),
        };
        let ca = match &self.ca {
            Some(path) => Some(Certificate::from_pem(read("CA bundle", path)?)),
            None => None,
        };
        Ok(NodeTls { server, ca })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: Option<&str>, key: Option<&str>) -> TlsConfig {
        TlsConfig {
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
            ca: None,
        }
    }

    #[test]
    fn plaintext_unless_both_files_are_set() {
        let tls = config(None, None).load().unwrap();
        assert!(!tls.serves_tls());
        assert!(tls.client_for("http://peer:50051", None).is_none());
        assert!(tls.client_for("https://peer:50051", None).is_some());
        assert!(
            tls.client_for("https://a:50051,https://b:50051", None)
                .is_some()
        );
        assert!(tls.client_for("dns:///peer:50051", None).is_none());
        assert!(tls.client_for("dns+https:///peer:50051", None).is_some());
        assert!(matches!(
            config(Some("cert.pem"), None).load(),
            Err(TlsSetupError::Incomplete)
        ));
        assert!(matches!(
            config(None, Some("key.pem")).load(),
            Err(TlsSetupError::Incomplete)
        ));
    }

    #[test]
    fn unreadable_or_unusable_files_fail_at_start_up() {
        let missing = config(Some("/nonexistent/cert.pem"), Some("/nonexistent/key.pem"));
        let error = missing.load().unwrap_err();
        assert!(matches!(error, TlsSetupError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/cert.pem"));
        let dir = std::env::temp_dir().join(format!("tenantry-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let path = junk.to_str().unwrap();
        assert!(matches!(
            config(Some(path), Some(path)).load(),
            Err(TlsSetupError::Invalid(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
