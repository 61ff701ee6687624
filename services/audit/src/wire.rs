//! Stored entries as `tenantry.audit.v1` messages.

use prost_types::{Struct, Value as ProtoValue, value::Kind};
use serde_json::Value;
use tenantry_platform::time::to_timestamp;
use tenantry_proto::audit::v1 as wire;
use tenantry_proto::events::v1::ActorKind;

use crate::store::entities::entry;

/// `accounts/{account_id}/auditEntries/{sequence}`.
pub fn entry_name(account_id: &str, sequence: i64) -> String {
    format!("accounts/{account_id}/auditEntries/{sequence}")
}

/// A stored entry as the API shows it.
pub fn entry_to_proto(row: entry::Model) -> wire::AuditEntry {
    wire::AuditEntry {
        name: entry_name(&row.account_id, row.sequence),
        account: format!("accounts/{}", row.account_id),
        sequence: row.sequence,
        event_id: row.event_id,
        event_type: row.event_type,
        event_time: Some(to_timestamp(row.event_time)),
        actor: row.actor,
        actor_kind: ActorKind::from_str_name(&row.actor_kind).unwrap_or(ActorKind::Unspecified)
            as i32,
        via: row.via,
        actor_role: row.actor_role,
        resource: row.resource,
        before: Some(json_struct(&row.before_json)),
        after: Some(json_struct(&row.after_json)),
        request_id: row.request_id,
        trace_id: row.trace_id,
        previous_hash: row.previous_hash,
        hash: row.hash,
        record_time: Some(to_timestamp(row.record_time)),
    }
}

/// A stored JSON object as a `google.protobuf.Struct` (empty if the text is not an object).
fn json_struct(text: &str) -> Struct {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Struct {
            fields: object
                .into_iter()
                .map(|(key, value)| (key, proto_value(value)))
                .collect(),
        },
        _ => Struct::default(),
    }
}

fn proto_value(value: Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(proto_value).collect(),
        }),
        Value::Object(object) => Kind::StructValue(Struct {
            fields: object
                .into_iter()
                .map(|(key, value)| (key, proto_value(value)))
                .collect(),
        }),
    };
    ProtoValue { kind: Some(kind) }
}
