//! What the changes of one call are attributed with (the `provenance` of the events it
//! publishes): the call's request id, the service that carried it for a person, and the role
//! that let the actor make the change.
//!
//! The edge opens a [`CallContext`] around every authenticated call ([`scope`]); code that
//! decides access records the role that granted it ([`record_role`]); the events crate reads
//! it when a change appends its event ([`current`]). Calls to peers pass the request id and the
//! role on ([`outgoing`]), and a peer trusts them only from a service principal, so a user
//! cannot claim a role with a header.

use std::sync::{Arc, Mutex};

use tenantry_proto::membership::v1::Role;

use crate::auth::Principal;

/// The request id header: read from callers (when valid), answered on every call, passed on
/// to peers.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The header carrying the actor's role from one service to a peer it calls for that actor.
/// Ignored unless the caller is a service.
pub const ACTOR_ROLE_HEADER: &str = "x-tenantry-actor-role";

/// The header carrying the person a service calls a peer for (`users/{sub}`). Ignored unless
/// the caller is a service.
pub const ACTOR_HEADER: &str = "x-tenantry-actor";

/// The longest request id accepted from a caller.
pub const MAX_REQUEST_ID_LENGTH: usize = 128;

/// What let an actor make a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorRole {
    /// The actor's own role in the account.
    Member(Role),
    /// The actor's role in the account's managing partner.
    PartnerMember(Role),
    /// A platform operator.
    Operator,
    /// A recipient of a message (acknowledging it).
    Recipient,
    /// The invitee of an invitation (accepting or declining it).
    Invitee,
    /// A service on its own.
    Service,
}

impl ActorRole {
    /// The spelling in `Provenance.actor_role` (see events.proto).
    pub fn as_str(self) -> &'static str {
        match self {
            ActorRole::Member(Role::Owner) => "OWNER",
            ActorRole::Member(Role::Admin) => "ADMIN",
            ActorRole::Member(_) => "EMPLOYEE",
            ActorRole::PartnerMember(Role::Owner) => "PARTNER_OWNER",
            ActorRole::PartnerMember(Role::Admin) => "PARTNER_ADMIN",
            ActorRole::PartnerMember(_) => "PARTNER_EMPLOYEE",
            ActorRole::Operator => "OPERATOR",
            ActorRole::Recipient => "RECIPIENT",
            ActorRole::Invitee => "INVITEE",
            ActorRole::Service => "SERVICE",
        }
    }

    /// The role spelled `text` (as [`ActorRole::as_str`] writes it), `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "OWNER" => ActorRole::Member(Role::Owner),
            "ADMIN" => ActorRole::Member(Role::Admin),
            "EMPLOYEE" => ActorRole::Member(Role::Employee),
            "PARTNER_OWNER" => ActorRole::PartnerMember(Role::Owner),
            "PARTNER_ADMIN" => ActorRole::PartnerMember(Role::Admin),
            "PARTNER_EMPLOYEE" => ActorRole::PartnerMember(Role::Employee),
            "OPERATOR" => ActorRole::Operator,
            "RECIPIENT" => ActorRole::Recipient,
            "INVITEE" => ActorRole::Invitee,
            "SERVICE" => ActorRole::Service,
            _ => return None,
        })
    }
}

/// One call's attribution.
#[derive(Debug)]
pub struct CallContext {
    request_id: String,
    /// `services/{name}` when a service made the call for a person.
    via: Option<String>,
    /// The person the call's changes are attributed to: the calling user, or the one a
    /// calling service acts for.
    person: Option<String>,
    /// Whether the caller is a service acting on its own (no person behind the call).
    service_on_its_own: bool,
    /// The caller's W3C `traceparent`, when well-formed: the trace the call's changes belong
    /// to even where this process exports no traces.
    traceparent: Option<String>,
    role: Mutex<Option<String>>,
}

impl CallContext {
    /// The context of a call with `headers` from `principal`: the caller's request id when it
    /// is well-formed, else a fresh one; a peer service's forwarded role.
    pub fn of_call(headers: &http::HeaderMap, principal: &Principal) -> Self {
        let request_id = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|value| is_valid_request_id(value))
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
        let (via, service_on_its_own, role, person) = match principal {
            Principal::User(user) => (None, false, None, Some(user.resource_name())),
            Principal::Service(service) => {
                let person = headers
                    .get(ACTOR_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .filter(|value| is_person(value))
                    .map(str::to_string);
                // Only a service may say which role its person acted in.
                let forwarded = headers
                    .get(ACTOR_ROLE_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .filter(|value| is_valid_role(value))
                    .map(str::to_string);
                let for_person = forwarded.is_some() || person.is_some();
                (
                    for_person.then(|| service.resource_name()),
                    !for_person,
                    forwarded,
                    person,
                )
            }
        };
        let traceparent = headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .filter(|value| trace_id_of(value).is_some())
            .map(str::to_string);
        Self {
            request_id,
            via,
            person,
            service_on_its_own,
            traceparent,
            role: Mutex::new(role),
        }
    }

    /// The trace id of the caller's `traceparent`, if it sent a valid one.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().and_then(trace_id_of)
    }

    /// The call's request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The role recorded for the call, if any.
    pub fn role(&self) -> Option<String> {
        self.role.lock().map(|role| role.clone()).unwrap_or(None)
    }

    /// The person the call's changes are attributed to (`users/{sub}`), if any.
    pub fn person(&self) -> Option<&str> {
        self.person.as_deref()
    }

    /// `services/{name}` when a service made this call for a person.
    pub fn via(&self) -> Option<&str> {
        self.via.as_deref()
    }

    /// Whether a service made the call on its own.
    pub fn service_on_its_own(&self) -> bool {
        self.service_on_its_own
    }
}

/// Whether `value` may be used as a request id: 1..=128 characters of `[A-Za-z0-9._:-]` (what
/// is safe in logs, headers and resource filters).
pub fn is_valid_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LENGTH
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'))
}

/// The trace id of a W3C `traceparent` (`00-{32 hex}-{16 hex}-{2 hex}`), unless malformed or
/// all zeros (invalid by the specification).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
                && span.bytes().any(|b| b != b'0') =>
        {
            Some(trace)
        }
        _ => None,
    }
}

fn is_person(value: &str) -> bool {
    value.strip_prefix("users/").is_some_and(|sub| {
        !sub.is_empty()
            && sub.len() <= 255
            && !sub.contains('/')
            && !sub.chars().any(char::is_control)
    })
}

fn is_valid_role(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

tokio::task_local! {
    static CALL: Arc<CallContext>;
}

/// Runs `work` (a call's handler) inside `context`.
pub async fn scope<F: Future>(context: Arc<CallContext>, work: F) -> F::Output {
    CALL.scope(context, work).await
}

/// The context of the call being handled, `None` outside a call (a consumer, a sweep).
pub fn current() -> Option<Arc<CallContext>> {
    CALL.try_with(Arc::clone).ok()
}

/// Records what let the actor of the current call make its change (the last recorded wins: the
/// permission checked last is the one the change needed). Outside a call it does nothing.
pub fn record_role(role: ActorRole) {
    if let Some(context) = current()
        && let Ok(mut recorded) = context.role.lock()
    {
        *recorded = Some(role.as_str().to_string());
    }
}

/// The headers a call to a peer carries for the current call: its request id and recorded
/// role (none outside a call).
pub fn outgoing() -> Vec<(&'static str, String)> {
    let Some(context) = current() else {
        return Vec::new();
    };
    let mut headers = vec![(REQUEST_ID_HEADER, context.request_id.clone())];
    if let Some(role) = context.role() {
        headers.push((ACTOR_ROLE_HEADER, role));
    }
    if let Some(person) = &context.person {
        headers.push((ACTOR_HEADER, person.clone()));
    }
    // The caller's trace, for peers of a process that exports none (with tracing on, the
    // client span's own `traceparent` replaces it).
    if let Some(traceparent) = &context.traceparent {
        headers.push(("traceparent", traceparent.clone()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ServiceIdentity, UserIdentity};

    fn user() -> Principal {
        Principal::User(UserIdentity {
            sub: "u-1".into(),
            email: None,
            email_verified: false,
            given_name: None,
            family_name: None,
            operator: false,
        })
    }

    fn service() -> Principal {
        Principal::Service(ServiceIdentity {
            name: "invitation".into(),
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_valid_request_id_is_kept_and_a_hostile_one_replaced() {
        let kept = CallContext::of_call(&headers(&[(REQUEST_ID_HEADER, "req-42:a.b_c")]), &user());
        assert_eq!(kept.request_id(), "req-42:a.b_c");
        for hostile in ["", "a b", "x\"; DROP", &"a".repeat(129), "ä"] {
            let map = http::HeaderMap::from_iter(
                http::HeaderValue::from_bytes(hostile.as_bytes())
                    .ok()
                    .map(|value| {
                        (
                            http::header::HeaderName::from_static(REQUEST_ID_HEADER),
                            value,
                        )
                    }),
            );
            let minted = CallContext::of_call(&map, &user());
            assert_ne!(minted.request_id(), hostile);
            assert!(uuid::Uuid::parse_str(minted.request_id()).is_ok());
        }
    }

    #[test]
    fn only_a_service_may_forward_a_role() {
        let claimed = headers(&[(ACTOR_ROLE_HEADER, "OPERATOR")]);
        let from_user = CallContext::of_call(&claimed, &user());
        assert_eq!(from_user.role(), None);
        assert_eq!(from_user.via(), None);
        let from_service = CallContext::of_call(&claimed, &service());
        assert_eq!(from_service.role().as_deref(), Some("OPERATOR"));
        assert_eq!(from_service.person(), None);
        let for_erin = CallContext::of_call(&headers(&[(ACTOR_HEADER, "users/erin")]), &service());
        assert_eq!(for_erin.person(), Some("users/erin"));
        assert_eq!(for_erin.via(), Some("services/invitation"));
        let claimed_person =
            CallContext::of_call(&headers(&[(ACTOR_HEADER, "users/erin")]), &user());
        assert_eq!(claimed_person.person(), Some("users/u-1"));
        assert_eq!(from_service.via(), Some("services/invitation"));
        let on_its_own = CallContext::of_call(&http::HeaderMap::new(), &service());
        assert!(on_its_own.service_on_its_own());
        assert_eq!(on_its_own.via(), None);
    }

    #[test]
    fn only_well_formed_traceparents_give_a_trace_id() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(valid), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for invalid in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(trace_id_of(invalid), None, "{invalid}");
        }
        let context = CallContext::of_call(&headers(&[("traceparent", valid)]), &user());
        assert_eq!(context.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[tokio::test]
    async fn roles_are_recorded_inside_a_call_only() {
        record_role(ActorRole::Operator);
        assert!(current().is_none());
        let context = Arc::new(CallContext::of_call(&http::HeaderMap::new(), &user()));
        scope(context.clone(), async {
            record_role(ActorRole::Member(Role::Admin));
            record_role(ActorRole::PartnerMember(Role::Owner));
            let headers = outgoing();
            assert_eq!(headers[1], (ACTOR_ROLE_HEADER, "PARTNER_OWNER".to_string()));
        })
        .await;
        assert_eq!(context.role().as_deref(), Some("PARTNER_OWNER"));
    }
}
