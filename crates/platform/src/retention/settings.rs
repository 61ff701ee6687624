//! How long pruned rows are kept, and how often the pruner runs: the `TENANTRY_*_RETENTION_*`
//! and `TENANTRY_PRUNE_INTERVAL_SECONDS` settings. `tenantry up` and `tenantry serve` read them
//! ([`RetentionConfig`]) and make them the process's ([`set_settings`]) before any service
//! starts; each service's pruner reads them ([`settings`]) when it starts.

use std::sync::RwLock;
use std::time::Duration;

use clap::Args;

/// Default of `TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS`: 7 days.
pub const DEFAULT_PROCESSED_EVENTS_RETENTION_HOURS: u64 = 168;
/// Default of `TENANTRY_REQUEST_ID_RETENTION_HOURS`: 7 days.
pub const DEFAULT_REQUEST_ID_RETENTION_HOURS: u64 = 168;
/// Default of `TENANTRY_INVITATION_RETENTION_DAYS`.
pub const DEFAULT_INVITATION_RETENTION_DAYS: u64 = 90;
/// Default of `TENANTRY_PRUNE_INTERVAL_SECONDS`: 5 minutes.
pub const DEFAULT_PRUNE_INTERVAL_SECONDS: u64 = 300;

/// The shortest retention of `processed_events` and `request_ids`, in hours: a day. Event
/// redeliveries come within the retry policy's delays (minutes), but a batch the relay
/// published and could not delete (its database went away) is published again when the
/// database is back; the API promises that request ids are remembered for at least 24 hours.
pub const MIN_RETENTION_HOURS: u64 = 24;
/// The longest retention in hours accepted (10 years).
pub const MAX_RETENTION_HOURS: u64 = 24 * 3650;
/// The longest `TENANTRY_INVITATION_RETENTION_DAYS` accepted (10 years).
pub const MAX_INVITATION_RETENTION_DAYS: u64 = 3650;
/// The longest `TENANTRY_PRUNE_INTERVAL_SECONDS` accepted (a day).
pub const MAX_PRUNE_INTERVAL_SECONDS: u64 = 86_400;

const HOUR: u64 = 3600;

/// The retention periods and the pruning interval of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionSettings {
    /// How long a consumer group remembers an event id it handled (a redelivery within it is
    /// a duplicate).
    pub processed_events: Duration,
    /// How long a create's `request_id` is remembered (a retry within it gets the first result).
    pub request_ids: Duration,
    /// How long an invitation is kept after it closed (accepted, revoked, expired).
    pub invitations: Duration,
    /// How often a service's pruner runs (each run is jittered by ±20 %).
    pub interval: Duration,
}

impl RetentionSettings {
    /// The documented defaults.
    pub const DEFAULT: Self = Self {
        processed_events: Duration::from_secs(DEFAULT_PROCESSED_EVENTS_RETENTION_HOURS * HOUR),
        request_ids: Duration::from_secs(DEFAULT_REQUEST_ID_RETENTION_HOURS * HOUR),
        invitations: Duration::from_secs(DEFAULT_INVITATION_RETENTION_DAYS * 24 * HOUR),
        interval: Duration::from_secs(DEFAULT_PRUNE_INTERVAL_SECONDS),
    };
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

static SETTINGS: RwLock<RetentionSettings> = RwLock::new(RetentionSettings::DEFAULT);

/// Makes `settings` the process's: pruners started from now on use them.
pub fn set_settings(settings: RetentionSettings) {
    *SETTINGS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = settings;
}

/// The process's retention settings ([`RetentionSettings::DEFAULT`] unless set).
pub fn settings() -> RetentionSettings {
    *SETTINGS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The retention settings on the command line and in the environment.
#[derive(Args, Clone, Debug)]
pub struct RetentionConfig {
    /// Hours a consumer group remembers the id of an event it handled, so a redelivery is
    /// recognised as a duplicate (24 to 87600).
    #[arg(
        long = "processed-events-retention-hours",
        env = "TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS",
        default_value_t = DEFAULT_PROCESSED_EVENTS_RETENTION_HOURS,
        value_parser = parse_processed_events_hours
    )]
    pub processed_events_hours: u64,
    /// Hours a create's request_id is remembered; a retry after that creates anew (24 to 87600).
    #[arg(
        long = "request-id-retention-hours",
        env = "TENANTRY_REQUEST_ID_RETENTION_HOURS",
        default_value_t = DEFAULT_REQUEST_ID_RETENTION_HOURS,
        value_parser = parse_request_id_hours
    )]
    pub request_id_hours: u64,
    /// Days an accepted, revoked or expired invitation is kept after it closed (1 to 3650).
    #[arg(
        long = "invitation-retention-days",
        env = "TENANTRY_INVITATION_RETENTION_DAYS",
        default_value_t = DEFAULT_INVITATION_RETENTION_DAYS,
        value_parser = parse_invitation_days
    )]
    pub invitation_days: u64,
    /// Seconds between two pruning runs of a service (1 to 86400; each run jittered ±20 %).
    #[arg(
        long = "prune-interval-seconds",
        env = "TENANTRY_PRUNE_INTERVAL_SECONDS",
        default_value_t = DEFAULT_PRUNE_INTERVAL_SECONDS,
        value_parser = parse_prune_interval
    )]
    pub prune_interval_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            processed_events_hours: DEFAULT_PROCESSED_EVENTS_RETENTION_HOURS,
            request_id_hours: DEFAULT_REQUEST_ID_RETENTION_HOURS,
            invitation_days: DEFAULT_INVITATION_RETENTION_DAYS,
            prune_interval_seconds: DEFAULT_PRUNE_INTERVAL_SECONDS,
        }
    }
}

impl RetentionConfig {
    /// The settings, checked together: request ids may not outlive the invitations they
    /// point at (a retry would then find its record but not the invitation it created).
    pub fn settings(&self) -> Result<RetentionSettings, String> {
        if self.request_id_hours > self.invitation_days * 24 {
            return Err(format!(
                "TENANTRY_REQUEST_ID_RETENTION_HOURS ({}) must not exceed \
                 TENANTRY_INVITATION_RETENTION_DAYS ({}) × 24: a request id must not outlive \
                 the invitation it created",
                self.request_id_hours, self.invitation_days
            ));
        }
        Ok(RetentionSettings {
            processed_events: Duration::from_secs(self.processed_events_hours * HOUR),
            request_ids: Duration::from_secs(self.request_id_hours * HOUR),
            invitations: Duration::from_secs(self.invitation_days * 24 * HOUR),
            interval: Duration::from_secs(self.prune_interval_seconds),
        })
    }

    /// Checks the settings and makes them the process's ([`set_settings`]).
    pub fn apply(&self) -> Result<RetentionSettings, String> {
        let settings = self.settings()?;
        set_settings(settings);
        Ok(settings)
    }
}

fn whole_number_in(
    variable: &str,
    flag: &str,
    unit: &str,
    range: std::ops::RangeInclusive<u64>,
    value: &str,
) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(format!(
            "{variable} ({flag}) must be a whole number of {unit} from {} to {}, not `{value}`",
            range.start(),
            range.end()
        )),
    }
}

/// Reads a `TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS` value (a clap `value_parser`).
pub fn parse_processed_events_hours(value: &str) -> Result<u64, String> {
    whole_number_in(
        "TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS",
        "--processed-events-retention-hours",
        "hours",
        MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS,
        value,
    )
}

/// Reads a `TENANTRY_REQUEST_ID_RETENTION_HOURS` value (a clap `value_parser`).
pub fn parse_request_id_hours(value: &str) -> Result<u64, String> {
    whole_number_in(
        "TENANTRY_REQUEST_ID_RETENTION_HOURS",
        "--request-id-retention-hours",
        "hours",
        MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS,
        value,
    )
}

/// Reads a `TENANTRY_INVITATION_RETENTION_DAYS` value (a clap `value_parser`).
pub fn parse_invitation_days(value: &str) -> Result<u64, String> {
    whole_number_in(
        "TENANTRY_INVITATION_RETENTION_DAYS",
        "--invitation-retention-days",
        "days",
        1..=MAX_INVITATION_RETENTION_DAYS,
        value,
    )
}

/// Reads a `TENANTRY_PRUNE_INTERVAL_SECONDS` value (a clap `value_parser`).
pub fn parse_prune_interval(value: &str) -> Result<u64, String> {
    whole_number_in(
        "TENANTRY_PRUNE_INTERVAL_SECONDS",
        "--prune-interval-seconds",
        "seconds",
        1..=MAX_PRUNE_INTERVAL_SECONDS,
        value,
    )
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        retention: RetentionConfig,
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["tenantry"]).unwrap();
        let settings = cli.retention.settings().unwrap();
        assert_eq!(settings, RetentionSettings::DEFAULT);
        assert_eq!(
            RetentionConfig::default().settings().unwrap(),
            RetentionSettings::default()
        );
        assert_eq!(
            settings.processed_events,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(settings.request_ids, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(settings.invitations, Duration::from_secs(90 * 24 * 3600));
        assert_eq!(settings.interval, Duration::from_secs(300));
    }

    #[test]
    fn values_are_read_and_checked() {
        let cli = Cli::try_parse_from([
            "tenantry",
            "--processed-events-retention-hours",
            "48",
            "--request-id-retention-hours",
            "24",
            "--invitation-retention-days",
            "30",
            "--prune-interval-seconds",
            "60",
        ])
        .unwrap();
        let settings = cli.retention.settings().unwrap();
        assert_eq!(settings.processed_events, Duration::from_secs(48 * 3600));
        assert_eq!(settings.request_ids, Duration::from_secs(24 * 3600));
        assert_eq!(settings.invitations, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(settings.interval, Duration::from_secs(60));
        for (flag, bad, variable) in [
            (
                "--processed-events-retention-hours",
                "1",
                "TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS",
            ),
            (
                "--request-id-retention-hours",
                "a week",
                "TENANTRY_REQUEST_ID_RETENTION_HOURS",
            ),
            (
                "--invitation-retention-days",
                "0",
                "TENANTRY_INVITATION_RETENTION_DAYS",
            ),
            (
                "--prune-interval-seconds",
                "86401",
                "TENANTRY_PRUNE_INTERVAL_SECONDS",
            ),
        ] {
            let error = match Cli::try_parse_from(["tenantry", flag, bad]) {
                Ok(_) => panic!("{flag} {bad} accepted"),
                Err(error) => error.to_string(),
            };
            assert!(error.contains(variable), "{error}");
        }
        let outliving = RetentionConfig {
            request_id_hours: 24 * 31,
            invitation_days: 30,
            ..RetentionConfig::default()
        };
        let error = outliving.settings().unwrap_err();
        assert!(
            error.contains("TENANTRY_REQUEST_ID_RETENTION_HOURS")
                && error.contains("TENANTRY_INVITATION_RETENTION_DAYS"),
            "{error}"
        );
    }
}
