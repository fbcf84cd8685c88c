//! Events as JSON: the envelope's fields and the payload decoded with the
//! domain's own types ([`DomainEvent::decode`]), so times read as RFC 3339
//! and ids as UUIDs. A payload of a type this build does not know is shown
//! as hex (with a best-effort reading of its MessagePack, if it has one:
//! a payload written by a newer build is an array, without field names);
//! one that claims a known type but does not decode is shown as hex with
//! the reason.

use kedai_engine::RecordedEvent;
use kedai_engine::domain::DomainEvent;
use serde::Serialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

/// The payload of an event as JSON.
pub fn payload_json(event_type: &str, payload: &[u8]) -> Value {
    match DomainEvent::decode(event_type, payload) {
        Ok(Some(event)) => domain_event_json(&event).unwrap_or_else(
            |e| json!({ "unrenderable": e.to_string(), "hex": hex::encode(payload) }),
        ),
        Ok(None) => {
            let mut shown = json!({ "unknown_type": event_type, "hex": hex::encode(payload) });
            if let Some(read) = messagepack_json(payload) {
                shown["messagepack"] = read;
            }
            shown
        }
        Err(e) => json!({ "undecodable": e.reason, "hex": hex::encode(payload) }),
    }
}

macro_rules! domain_event_json {
    ($event:expr; $($name:ident),* $(,)?) => {
        // Every event type is listed; a type added to the domain later
        // falls through to the generic reading until it is listed here.
        #[allow(unreachable_patterns)]
        match $event {
            $(DomainEvent::$name(e) => serde_json::to_value(e),)*
            // With field names, so the generic reading shows them.
            other => Ok(rmp_serde::to_vec_named(other)
                .ok()
                .and_then(|bytes| messagepack_json(&bytes))
                .unwrap_or(Value::Null)),
        }
    };
}

/// A domain event's fields as JSON.
pub fn domain_event_json(event: &DomainEvent) -> Result<Value, serde_json::Error> {
    domain_event_json!(event;
        ShopCreated, ShopSettingsChanged, WarehouseAdded, DefaultWarehouseSet, ProductCreated,
        VariationAdded, PricesChanged, CostChanged, WholesaleTiersSet, SupplierStockSet,
        SkuClaimed, CustomerRegistered, CustomerUpdated, StockReceived, StockRemoved,
        StockTransferredOut, StockTransferredIn, StockCounted, StockReserved, StockReleased,
        StockShipped, StockRestocked, OrderPlaced, OrderPaymentRecorded, OrderProcessing,
        OrderPacked, OrderReadyForPickup, OrderShipped, OrderDelivered, OrderCompleted,
        OrderCancelled, OrderReturnStarted, OrderReturnReceived, OrderLost, OrderRefunded,
        LedgerTransactionRecorded, WithdrawalRequested, WithdrawalReviewed, WithdrawalCompleted,
        WithdrawalRejected, WithdrawalCanceled, ExpenseRecorded, ExpenseVoided, CheckoutStarted,
        CheckoutUpdated, CheckoutCompleted, CheckoutAbandoned, ConversationStarted,
        MessageReceived, MessageSent, MessagesImported, ConversationLabelAdded,
        ConversationLabelRemoved, ConversationAssigned, ConversationUnassigned,
        ConversationResolved, ConversationReopened, MessageQueued, MessageDispatched,
        MessageDispatchFailed, TemplateSaved, TemplateDeleted, ApiKeyIssued,
        ApiKeyRevoked,
    )
}

/// An event with every envelope field and its payload as JSON: what
/// `history --json` and `export --format jsonl` write.
pub fn event_json(event: &RecordedEvent) -> Value {
    let mut map = envelope_fields(event);
    map.insert(
        "payload".into(),
        payload_json(&event.event_type, &event.payload),
    );
    Value::Object(map)
}

/// The envelope fields, in the order of [`ENVELOPE_COLUMNS`].
pub fn envelope_fields(event: &RecordedEvent) -> Map<String, Value> {
    let values = envelope_values(event);
    ENVELOPE_COLUMNS
        .iter()
        .zip(values)
        .map(|(k, v)| ((*k).to_owned(), v))
        .collect()
}

/// Names of the envelope fields (and the CSV columns before `payload`).
pub const ENVELOPE_COLUMNS: [&str; 13] = [
    "position",
    "shop",
    "stream",
    "version",
    "event_id",
    "recorded_at",
    "actor_role",
    "actor_id",
    "correlation_id",
    "causation_id",
    "event_type",
    "schema_version",
    "payload_bytes",
];

fn envelope_values(e: &RecordedEvent) -> [Value; 13] {
    [
        json!(e.position),
        json!(e.stream.shop.0.to_string()),
        json!(&*e.stream.name),
        json!(e.version),
        json!(e.event_id.to_string()),
        json!(e.recorded_at.to_string()),
        json!(e.actor.role.as_str()),
        json!(e.actor.id),
        json!(e.correlation_id.to_string()),
        e.causation_id.map_or(Value::Null, |c| json!(c.to_string())),
        json!(&*e.event_type),
        json!(e.schema_version),
        json!(e.payload.len()),
    ]
}

/// The envelope fields as text, for a CSV row.
pub fn envelope_texts(e: &RecordedEvent) -> [String; 13] {
    envelope_values(e).map(|v| match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// A best-effort JSON reading of MessagePack bytes: maps, arrays, text and
/// numbers as they are; 16-byte binaries as UUIDs, other binaries as hex.
/// `None` if the bytes are not one whole MessagePack value.
pub fn messagepack_json(bytes: &[u8]) -> Option<Value> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = Generic::deserialize(&mut de).ok()?.0;
    (de.position() as usize == bytes.len()).then_some(value)
}

/// A JSON value read from any self-describing format.
struct Generic(Value);

impl Generic {
    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Generic, D::Error> {
        d.deserialize_any(GenericVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Generic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Generic::deserialize(d)
    }
}

struct GenericVisitor;

impl<'de> Visitor<'de> for GenericVisitor {
    type Value = Generic;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Generic, E> {
        Ok(Generic(json!(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Generic, E> {
        Ok(Generic(json!(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Generic, E> {
        Ok(Generic(json!(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Generic, E> {
        Ok(Generic(json!(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Generic, E> {
        Ok(Generic(json!(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Generic, E> {
        Ok(Generic(match uuid::Uuid::from_slice(v) {
            Ok(id) => json!(id.to_string()),
            Err(_) => json!(hex::encode(v)),
        }))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Generic, E> {
        Ok(Generic(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Generic, E> {
        Ok(Generic(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Generic, D::Error> {
        Generic::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Generic, A::Error> {
        let mut items = Vec::new();
        while let Some(Generic(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Generic(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Generic, A::Error> {
        let mut out = Map::new();
        while let Some((Generic(k), Generic(v))) = map.next_entry()? {
            let key = match k {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, v);
        }
        Ok(Generic(Value::Object(out)))
    }
}

/// A value serialised with its object keys sorted, whatever the JSON
/// library's map type: output that two runs, and `diff`, can compare.
#[derive(Debug)]
pub struct Sorted<'a>(pub &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    out.serialize_entry(k, &Sorted(v))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    out.serialize_element(&Sorted(v))?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedai_engine::domain::events::{SkuClaimed, WarehouseAdded};
    use kedai_engine::domain::ids::{ProductId, Sku, WarehouseId};
    use uuid::Uuid;

    #[test]
    fn known_events_are_decoded_with_their_types() {
        let event = DomainEvent::from(WarehouseAdded {
            warehouse_id: WarehouseId(Uuid::from_u128(0x11)),
            name: "Gudang Malang".into(),
            city: None,
        });
        let shown = payload_json(event.event_type(), &event.encode());
        assert_eq!(
            shown,
            json!({
                "warehouse_id": "00000000-0000-0000-0000-000000000011",
                "name": "Gudang Malang",
                "city": null,
            })
        );
    }

    #[test]
    fn unknown_and_damaged_payloads_are_shown_as_hex() {
        let shown = payload_json("SomethingNew", b"\x81\xa1a\x01");
        assert_eq!(shown["unknown_type"], "SomethingNew");
        assert_eq!(shown["hex"], "81a16101");
        assert_eq!(shown["messagepack"], json!({"a": 1}));
        let shown = payload_json("NotMessagePack", b"hello world");
        assert!(shown.get("messagepack").is_none());
        let claimed = DomainEvent::from(SkuClaimed {
            sku: Sku::parse("KAOS-M").unwrap(),
            product_id: ProductId(Uuid::from_u128(1)),
        });
        let shown = payload_json("OrderPlaced", &claimed.encode());
        assert!(shown["undecodable"].is_string(), "{shown}");
        assert_eq!(shown["hex"], hex::encode(claimed.encode()));
    }

    #[test]
    fn sorted_output_has_sorted_keys() {
        let value = json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": 3}});
        let text = serde_json::to_string(&Sorted(&value)).unwrap();
        assert_eq!(text, r#"{"a":{"c":3,"d":[{"y":2,"z":1}]},"b":1}"#);
    }
}
