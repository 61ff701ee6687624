//! Stored entries as `tenantry.audit.v1` messages.

use prost_types::{Struct, Value as ProtoValue, value::Kind};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// A stored JSON object as a `google.protobuf.Struct` (empty if the text is not an object),
/// parsed straight into protobuf values (a listing maps two per entry; going through
/// `serde_json::Value` first doubled the allocations).
fn json_struct(text: &str) -> Struct {
    match serde_json::from_str::<ProtoJson>(text) {
        Ok(ProtoJson(ProtoValue {
            kind: Some(Kind::StructValue(object)),
        })) => object,
        _ => Struct::default(),
    }
}

/// A JSON value read as a `google.protobuf.Value`.
struct ProtoJson(ProtoValue);

impl<'de> Deserialize<'de> for ProtoJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProtoJsonVisitor)
    }
}

struct ProtoJsonVisitor;

fn kind(kind: Kind) -> ProtoJson {
    ProtoJson(ProtoValue { kind: Some(kind) })
}

impl<'de> Visitor<'de> for ProtoJsonVisitor {
    type Value = ProtoJson;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ProtoJson, E> {
        Ok(kind(Kind::NullValue(0)))
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<ProtoJson, E> {
        Ok(kind(Kind::BoolValue(flag)))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<ProtoJson, E> {
        Ok(kind(Kind::NumberValue(number as f64)))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<ProtoJson, E> {
        Ok(kind(Kind::NumberValue(number as f64)))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<ProtoJson, E> {
        Ok(kind(Kind::NumberValue(number)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ProtoJson, E> {
        Ok(kind(Kind::StringValue(text.to_string())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<ProtoJson, E> {
        Ok(kind(Kind::StringValue(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<ProtoJson, A::Error> {
        let mut values = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(ProtoJson(value)) = items.next_element()? {
            values.push(value);
        }
        Ok(kind(Kind::ListValue(prost_types::ListValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<ProtoJson, A::Error> {
        let mut fields = std::collections::BTreeMap::new();
        while let Some((key, ProtoJson(value))) = entries.next_entry::<String, ProtoJson>()? {
            fields.insert(key, value);
        }
        Ok(kind(Kind::StructValue(Struct { fields })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JSON kind lands as the protobuf value it is (what `google.protobuf.Struct`'s own
    /// JSON mapping gives back), and text that is not an object gives an empty Struct.
    #[test]
    fn stored_json_becomes_the_same_struct() {
        let text = r#"{"a":null,"b":true,"c":-3,"d":2.5,"e":"x\"y","f":[1,"z",{"g":[]}],"h":{"i":18446744073709551615}}"#;
        let parsed = json_struct(text);
        let number = |n: f64| ProtoValue {
            kind: Some(Kind::NumberValue(n)),
        };
        let string = |s: &str| ProtoValue {
            kind: Some(Kind::StringValue(s.to_string())),
        };
        let object = |fields: Vec<(&str, ProtoValue)>| Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key.to_string(), value))
                .collect(),
        };
        let expected = object(vec![
            (
                "a",
                ProtoValue {
                    kind: Some(Kind::NullValue(0)),
                },
            ),
            (
                "b",
                ProtoValue {
                    kind: Some(Kind::BoolValue(true)),
                },
            ),
            ("c", number(-3.0)),
            ("d", number(2.5)),
            ("e", string("x\"y")),
            (
                "f",
                ProtoValue {
                    kind: Some(Kind::ListValue(prost_types::ListValue {
                        values: vec![
                            number(1.0),
                            string("z"),
                            ProtoValue {
                                kind: Some(Kind::StructValue(object(vec![(
                                    "g",
                                    ProtoValue {
                                        kind: Some(Kind::ListValue(Default::default())),
                                    },
                                )]))),
                            },
                        ],
                    })),
                },
            ),
            (
                "h",
                ProtoValue {
                    kind: Some(Kind::StructValue(object(vec![(
                        "i",
                        number(18446744073709551615.0),
                    )]))),
                },
            ),
        ]);
        assert_eq!(parsed, expected);
        for not_an_object in ["", "[]", "1", "\"x\"", "{", "null"] {
            assert_eq!(
                json_struct(not_an_object),
                Struct::default(),
                "{not_an_object}"
            );
        }
    }
}
