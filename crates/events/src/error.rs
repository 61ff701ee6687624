//! The errors of this crate, one enum per concern.

use uuid::Uuid;

/// Why a batch of events could not be published (the relay keeps the rows and retries).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot be reached (connect, channel or topology failure).
    #[error("cannot reach the message broker")]
    Unavailable(#[source] lapin::Error),
    /// The broker refused or lost a publish of this event.
    #[error("publishing event {event_id} failed")]
    Publish {
        /// The event that was being published.
        event_id: Uuid,
        /// The broker's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker answered with a negative confirm: it did not take responsibility.
    #[error("the broker did not confirm event {0} (nack)")]
    Nacked(Uuid),
    /// The broker took too long to confirm; the batch will be published again.
    #[error("the broker did not confirm within {0:?}")]
    Timeout(std::time::Duration),
    /// The in-process bus no longer accepts events (the process is shutting down).
    #[error("the event bus is closed")]
    Closed,
    /// The event or the configuration cannot be expressed in AMQP (e.g. a name over 255 bytes).
    #[error("cannot publish: {0}")]
    Invalid(String),
}

/// Why a handler failed on one event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retry later (database unavailable, SMTP down, peer service unavailable, …).
    #[error("transient: {0}")]
    Transient(String),
    /// Never going to work (undecodable payload, …): straight to the dead-letter queue.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The handler has nothing to do with this event type (it was bound to the group by
    /// mistake, or added by a publisher the consumer does not know yet). Not retried: the
    /// runtime records the event as handled, counts it (`outcome="unknown_type"`) and warns.
    #[error("no handling for event type {0:?}")]
    UnknownType(String),
    /// Another delivery holds the work (e.g. a lease on the row, taken by a copy of the same
    /// event on another replica, or by a process that died and whose lease has not expired):
    /// try again after `retry_after`, without using up an attempt — waiting for someone else is
    /// not this event's failure, and counting it would dead-letter an event that only had to
    /// wait out a lease.
    #[error("busy: {reason} (again in {retry_after:?})")]
    Busy {
        /// Who holds the work, for the log.
        reason: String,
        /// When trying again can succeed (e.g. when the lease expires).
        retry_after: std::time::Duration,
    },
}

/// A service's own error as a handler failure: whether the same event would fail the same way
/// again (permanent: straight to the dead letters) or may succeed later (transient: retried).
/// Implemented by each service's domain error; `?` in a handler then converts it.
pub trait HandlerFailure: std::error::Error + 'static {
    /// Whether retrying cannot help (e.g. a corrupt row). Default: no, database or peer
    /// trouble passes.
    fn permanent(&self) -> bool {
        false
    }
}

impl<E: HandlerFailure> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let text = tenantry_platform::error::ErrorChain(&error).to_string();
        if error.permanent() {
            Self::Permanent(text)
        } else {
            Self::Transient(text)
        }
    }
}

impl HandlerError {
    /// The error for an event whose type `event` the handler does not handle.
    pub fn unknown_type(event: &crate::Event) -> Self {
        Self::UnknownType(event.event_type.clone())
    }
}

/// Why connecting to the broker failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to the broker")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl From<ConnectError> for PublishError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Broker(error) => Self::Unavailable(error),
            ConnectError::Timeout(after) => Self::Timeout(after),
        }
    }
}

/// Why a consumer session ended (logged; the runtime reconnects with back-off).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The broker connection or channel failed.
    #[error("broker connection or channel failed")]
    Broker(#[from] lapin::Error),
    /// The broker cancelled the consumer (e.g. its queue was deleted).
    #[error("the broker cancelled the consumer")]
    Cancelled,
    /// Setting up the session did not finish in time (a broker restarting can leave a
    /// connection that looks open but answers nothing).
    #[error("the broker did not answer the session's set-up within {0:?}")]
    SetupTimeout(std::time::Duration),
    /// The channel or its connection was found closed while the delivery stream had not ended.
    #[error("the channel was found closed")]
    ChannelClosed,
}

/// Why a delivery could not be settled (acked, or moved to the retry or dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettleError {
    #[error("the broker connection or channel failed")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not confirm the republish to {0} (nack)")]
    Nacked(String),
    #[error("the republish to {0} was unroutable (queue missing)")]
    Unroutable(String),
    #[error("the broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum ServiceError {
        #[error("corrupt row: {0}")]
        Corrupt(String),
        #[error("the database is down")]
        Down(#[source] std::io::Error),
    }

    impl HandlerFailure for ServiceError {
        fn permanent(&self) -> bool {
            matches!(self, Self::Corrupt(_))
        }
    }

    #[test]
    fn a_service_error_is_permanent_or_transient_with_its_cause_chain() {
        let corrupt = HandlerError::from(ServiceError::Corrupt("invitations/1".into()));
        assert!(
            matches!(&corrupt, HandlerError::Permanent(text) if text == "corrupt row: invitations/1")
        );
        let down = HandlerError::from(ServiceError::Down(std::io::Error::other("refused")));
        assert!(
            matches!(&down, HandlerError::Transient(text) if text == "the database is down: refused"),
            "{down:?}"
        );
    }
}
