//! The hash chain: the canonical form of an entry (documented in audit.proto, so anyone holding
//! the entries can check them), its SHA-256, and the HMAC that signs a purge tombstone.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The fields of an entry the hash commits to, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Hashed<'a> {
    /// The account id (not its resource name).
    pub account: &'a str,
    /// Its sequence number in the account's log.
    pub sequence: i64,
    /// The event id.
    pub event_id: &'a str,
    /// The event type.
    pub event_type: &'a str,
    /// The event time, to the microsecond.
    pub event_time: DateTime<Utc>,
    /// The actor.
    pub actor: &'a str,
    /// The actor kind's enum name.
    pub actor_kind: &'a str,
    /// The service that acted for the actor.
    pub via: &'a str,
    /// The actor's role.
    pub actor_role: &'a str,
    /// The resource.
    pub resource: &'a str,
    /// The stored JSON text of the changed fields before.
    pub before: &'a str,
    /// The stored JSON text of the changed fields after.
    pub after: &'a str,
    /// The request id.
    pub request_id: &'a str,
    /// The trace id.
    pub trace_id: &'a str,
    /// The previous entry's hash (or the tombstone's), empty for the first.
    pub previous_hash: &'a str,
}

/// The event time as the canonical form spells it.
pub fn canonical_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `time` cut to the microsecond, as both databases store it.
pub fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// The JSON text an object is stored as (keys sorted, no spaces).
pub fn stored_json(object: &Map<String, Value>) -> String {
    sorted_json(&Value::Object(object.clone()))
}

/// `value` as JSON text with every object's keys sorted, whatever order the map keeps (a
/// dependency may switch serde_json to insertion order).
pub fn sorted_json(value: &Value) -> String {
    match value {
        Value::Object(object) => {
            let mut members: Vec<(&String, &Value)> = object.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let body = members
                .into_iter()
                .map(|(key, value)| format!("{}:{}", Value::from(key.as_str()), sorted_json(value)))
                .collect::<Vec<_>>()
                .join(",");
            format!("{{{body}}}")
        }
        Value::Array(items) => {
            let body = items.iter().map(sorted_json).collect::<Vec<_>>().join(",");
            format!("[{body}]")
        }
        other => other.to_string(),
    }
}

impl Hashed<'_> {
    /// The canonical form: a JSON object of the fields in the documented order.
    pub fn canonical(&self) -> String {
        // A stored object that is not valid JSON (a tampered row) is hashed as a string, so the
        // mismatch is reported instead of failing the verification.
        let object = |text: &str| {
            serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.into()))
        };
        // serde_json keeps insertion order only with `preserve_order`; write the members by hand.
        let members: [(&str, Value); 15] = [
            ("account", Value::from(self.account)),
            ("sequence", Value::from(self.sequence)),
            ("event_id", Value::from(self.event_id)),
            ("event_type", Value::from(self.event_type)),
            ("event_time", Value::from(canonical_time(self.event_time))),
            ("actor", Value::from(self.actor)),
            ("actor_kind", Value::from(self.actor_kind)),
            ("via", Value::from(self.via)),
            ("actor_role", Value::from(self.actor_role)),
            ("resource", Value::from(self.resource)),
            ("before", object(self.before)),
            ("after", object(self.after)),
            ("request_id", Value::from(self.request_id)),
            ("trace_id", Value::from(self.trace_id)),
            ("previous_hash", Value::from(self.previous_hash)),
        ];
        let body = members
            .iter()
            .map(|(name, value)| format!("{}:{}", Value::from(*name), sorted_json(value)))
            .collect::<Vec<_>>()
            .join(",");
        format!("{{{body}}}")
    }

    /// The entry's hash: lower-case hex SHA-256 of the canonical form.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.canonical().as_bytes()))
    }
}

/// What a purge tombstone says: an account's entries up to `through_sequence` were removed,
/// the last of them had `last_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The account id.
    pub account: String,
    /// The last removed sequence number.
    pub through_sequence: i64,
    /// The hash of that entry: the next entry's `previous_hash`.
    pub last_hash: String,
    /// How many entries have been removed in all.
    pub purged_entries: i64,
    /// The purge's cut-off, RFC 3339.
    pub before_time: String,
    /// The operator who purged.
    pub operator: String,
}

impl Tombstone {
    /// HMAC-SHA256 over the tombstone's fields with `key`, lower-case hex.
    pub fn signature(&self, key: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(self.signed_text().as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `signature` is this tombstone's under `key` (compared in constant time).
    pub fn verify(&self, key: &[u8], signature: &str) -> bool {
        let Some(bytes) = unhex(signature) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(self.signed_text().as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    fn signed_text(&self) -> String {
        serde_json::json!([
            "tenantry.audit.tombstone.v1",
            self.account,
            self.through_sequence,
            self.last_hash,
            self.purged_entries,
            self.before_time,
            self.operator,
        ])
        .to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(previous_hash: &str) -> Hashed<'_> {
        Hashed {
            account: "acme",
            sequence: 1,
            event_id: "0193a000-0000-7000-8000-000000000001",
            event_type: "account.updated",
            event_time: DateTime::from_timestamp_micros(1_733_000_000_123_456).unwrap(),
            actor: "users/u-1",
            actor_kind: "ACTOR_KIND_PERSON",
            via: "",
            actor_role: "OWNER",
            resource: "accounts/acme",
            before: r#"{"display_name":"Acme"}"#,
            after: r#"{"display_name":"Acme Corp"}"#,
            request_id: "r-1",
            trace_id: "",
            previous_hash,
        }
    }

    #[test]
    fn the_canonical_form_is_the_documented_json() {
        let canonical = entry("").canonical();
        assert!(canonical.starts_with(r#"{"account":"acme","sequence":1,"event_id":"#));
        assert!(canonical.contains(r#""event_time":"2024-11-30T20:53:20.123456Z""#));
        assert!(canonical.contains(r#""before":{"display_name":"Acme"},"after":{"#));
        assert!(canonical.ends_with(r#""previous_hash":""}"#));
        let parsed: Value = serde_json::from_str(&canonical).unwrap();
        assert_eq!(parsed["sequence"], 1);
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let first = entry("").hash();
        assert_eq!(first.len(), 64);
        assert_ne!(entry("ab").hash(), first);
        let mut renamed = entry("");
        renamed.after = r#"{"display_name":"Evil Corp"}"#;
        assert_ne!(renamed.hash(), first);
        let mut later = entry("");
        later.event_time += chrono::Duration::microseconds(1);
        assert_ne!(later.hash(), first);
    }

    #[test]
    fn a_tombstone_verifies_under_its_key_only() {
        let tombstone = Tombstone {
            account: "acme".into(),
            through_sequence: 10,
            last_hash: "ab".repeat(32),
            purged_entries: 10,
            before_time: "2026-01-01T00:00:00Z".into(),
            operator: "users/op".into(),
        };
        let signature = tombstone.signature(b"key");
        assert!(tombstone.verify(b"key", &signature));
        assert!(!tombstone.verify(b"other", &signature));
        let forged = Tombstone {
            through_sequence: 11,
            ..tombstone.clone()
        };
        assert!(!forged.verify(b"key", &signature));
        assert!(!tombstone.verify(b"key", "zz"));
    }
}
