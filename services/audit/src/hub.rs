//! Wakes the open WatchAuditEntries streams of this replica when its consumer committed new
//! entries. Entries appended by another replica are found by each stream's periodic poll
//! (`WATCH_POLL`), so no stream depends on which replica consumed an event.

use tokio::sync::watch;

/// This replica's wake-up signal for watchers.
#[derive(Debug)]
pub struct EntryHub {
    commits: watch::Sender<u64>,
}

impl Default for EntryHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EntryHub {
    /// A hub with no watcher.
    pub fn new() -> Self {
        Self {
            commits: watch::Sender::new(0),
        }
    }

    /// Something was committed: every watcher looks again.
    pub fn wake(&self) {
        self.commits
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver that sees the next wake-up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }
}
