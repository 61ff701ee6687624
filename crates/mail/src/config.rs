//! The e-mail settings every sending service shares: one SMTP server and one sender, read
//! once by the node (`--smtp-url`/`TENANTRY_SMTP_URL`, `--mail-from`/`TENANTRY_MAIL_FROM`).

use std::path::Path;
use std::sync::Arc;

use lettre::message::Mailbox;

use crate::{MailSetupError, MailTransport};

/// The sender when none is configured.
pub const DEFAULT_MAIL_FROM: &str = "Tenantry <no-reply@tenantry.invalid>";

/// Where e-mails go and whom they come from.
#[derive(clap::Args, Clone, PartialEq, Eq)]
#[group(id = "mail")]
pub struct MailConfig {
    /// SMTP server, e.g. smtp://127.0.0.1:1025 (plain) or smtps://user:pass@host:465; unset =
    /// write .eml files.
    #[arg(long = "smtp-url", env = "TENANTRY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of every e-mail Tenantry sends.
    #[arg(long = "mail-from", env = "TENANTRY_MAIL_FROM", default_value = DEFAULT_MAIL_FROM)]
    pub mail_from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            mail_from: DEFAULT_MAIL_FROM.into(),
        }
    }
}

/// The SMTP URL without its password (it may hold one).
impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig")
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(tenantry_platform::db::redact),
            )
            .field("mail_from", &self.mail_from)
            .finish()
    }
}

impl MailConfig {
    /// The transport: SMTP when `smtp_url` is set and not blank, else `.eml` files in
    /// `mail_dir` (see [`crate::transport`]); refuses an unusable URL or sender.
    pub fn transport(&self, mail_dir: &Path) -> Result<Arc<dyn MailTransport>, MailSetupError> {
        crate::transport(self.smtp_url.as_deref(), &self.mail_from, mail_dir)
    }

    /// The sender; [`MailConfig::transport`] refuses an invalid one at start-up, so the
    /// fallback only guards callers that skipped it.
    pub fn sender(&self) -> Mailbox {
        self.mail_from.parse().unwrap_or_else(|error| {
            tracing::error!(%error, mail_from = %self.mail_from, "invalid sender; using the default");
            DEFAULT_MAIL_FROM
                .parse()
                .expect("the default sender is a valid mailbox")
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mail: MailConfig,
    }

    #[test]
    fn settings_and_transports() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["tenantry"]).unwrap();
        assert_eq!(cli.mail, MailConfig::default());
        let dir =
            std::env::temp_dir().join(format!("tenantry-mail-config-{}", uuid::Uuid::new_v4()));
        let files = MailConfig::default().transport(&dir).unwrap();
        assert!(format!("{files:?}").contains("FileTransport"));
        let smtp = MailConfig {
            smtp_url: Some("smtp://127.0.0.1:1025".into()),
            ..MailConfig::default()
        };
        assert!(format!("{:?}", smtp.transport(&dir).unwrap()).contains("SmtpTransport"));
        let bad_url = MailConfig {
            smtp_url: Some("http://example.com".into()),
            ..MailConfig::default()
        };
        assert!(bad_url.transport(&dir).is_err());
        let bad_from = MailConfig {
            mail_from: "not a mailbox".into(),
            ..MailConfig::default()
        };
        assert!(bad_from.transport(&dir).is_err());
        let secret = MailConfig {
            smtp_url: Some("smtps://user:hunter2@mail.example:465".into()),
            ..MailConfig::default()
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
