//! WatchAuditEntries: the entries of one account after a sequence number, then each new one,
//! in sequence order, with no gap and no repeat — a partner integration's feed.
//!
//! The stream reads the store, never the events: what it sends is what was committed, in the
//! order of the chain, whichever replica appended it. It looks again when this replica's
//! consumer commits (the hub) and at least every [`WATCH_POLL`] (another replica's commits).

use std::time::Duration;

use tenantry_platform::names::parse_account;
use tenantry_platform::{ApiError, Principal};
use tenantry_proto::audit::v1 as wire;
use tenantry_proto::membership::v1::Permission;
use tokio::sync::mpsc;
use tonic::{Request, Status};

use super::{AuditApi, WatchStream, to_status};
use crate::domain::AuditError;
use crate::wire::entry_to_proto;

/// How often a stream looks for entries another replica appended.
pub const WATCH_POLL: Duration = Duration::from_secs(1);
/// How often a stream checks that its caller may still read the trail.
pub const REAUTHORIZE_EVERY: Duration = Duration::from_secs(60);
/// Entries read per statement (also the stream's buffer).
const BATCH: u64 = 256;

/// How long the next entry may be missing while a later one is stored before the stream ends
/// with DATA_LOSS (appends commit in sequence order, so a lasting gap is a removed row).
const GAP_TOLERANCE: Duration = Duration::from_secs(5);

fn shutting_down() -> Status {
    Status::unavailable(
        "the audit service is shutting down; resume with the last sequence number received",
    )
}

impl AuditApi {
    /// The next entry after `last` is missing while a later one is stored: a purge removed it
    /// (OUT_OF_RANGE, as when opening), or, if that lasts, the row is gone (DATA_LOSS).
    async fn explain_gap(
        &self,
        account_id: &str,
        last: i64,
        gap_since: &mut Option<tokio::time::Instant>,
    ) -> Result<(), Status> {
        if let Some(stone) = self.store.tombstone(account_id).await.map_err(to_status)?
            && last < stone.through_sequence
        {
            return Err(to_status(AuditError::Purged {
                account: account_id.to_string(),
                through: stone.through_sequence,
            }));
        }
        let since = *gap_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= GAP_TOLERANCE {
            tracing::error!(%account_id, missing = last + 1, "audit entry missing from the log");
            return Err(Status::data_loss(format!(
                "entry {} of accounts/{account_id} is missing from the log; VerifyAuditChain names it",
                last + 1
            )));
        }
        Ok(())
    }

    pub(crate) async fn watch(
        &self,
        request: Request<wire::WatchAuditEntriesRequest>,
    ) -> Result<WatchStream, Status> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let account_id = parse_account("parent", &request.parent)?;
        if request.after_sequence < 0 {
            return Err(ApiError::invalid_field(
                "after_sequence",
                "must not be negative (0: from the first entry)",
            )
            .into());
        }
        self.authorizer
            .require(&principal, &account_id, Permission::AuditRead)
            .await?;
        if let Some(stone) = self.store.tombstone(&account_id).await.map_err(to_status)?
            && request.after_sequence < stone.through_sequence
        {
            return Err(to_status(AuditError::Purged {
                account: account_id,
                through: stone.through_sequence,
            }));
        }
        let (sender, receiver) = mpsc::channel(BATCH as usize);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api
                .feed(&principal, &account_id, request.after_sequence, &sender)
                .await
            {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }

    /// Sends the entries after `last` until the caller goes away, the service shuts down or
    /// the caller loses access.
    async fn feed(
        &self,
        principal: &Principal,
        account_id: &str,
        mut last: i64,
        sender: &mpsc::Sender<Result<wire::WatchAuditEntriesResponse, Status>>,
    ) -> Result<(), Status> {
        let mut wake = self.hub.subscribe();
        let mut authorized_at = tokio::time::Instant::now();
        // Since when the next entry is missing while a later one is stored.
        let mut gap_since: Option<tokio::time::Instant> = None;
        loop {
            // Subscribed before reading: a commit after the read wakes the wait below.
            wake.borrow_and_update();
            let rows = self
                .store
                .after(account_id, last, BATCH)
                .await
                .map_err(to_status)?;
            let full = rows.len() as u64 == BATCH;
            let gap = rows.first().is_some_and(|row| row.sequence != last + 1);
            for row in rows {
                let sequence = row.sequence;
                if sequence != last + 1 {
                    // Never skip an entry.
                    break;
                }
                let item = wire::WatchAuditEntriesResponse {
                    audit_entry: Some(entry_to_proto(row)),
                };
                tokio::select! {
                    sent = sender.send(Ok(item)) => if sent.is_err() { return Ok(()) },
                    _ = self.shutdown.wait() => return Err(shutting_down()),
                }
                last = sequence;
            }
            if gap {
                self.explain_gap(account_id, last, &mut gap_since).await?;
            } else {
                gap_since = None;
            }
            if authorized_at.elapsed() >= REAUTHORIZE_EVERY {
                self.authorizer
                    .require(principal, account_id, Permission::AuditRead)
                    .await?;
                authorized_at = tokio::time::Instant::now();
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = sender.closed() => return Ok(()),
                _ = self.shutdown.wait() => return Err(shutting_down()),
                _ = wake.changed() => {}
                _ = tokio::time::sleep(WATCH_POLL) => {}
            }
        }
    }
}
