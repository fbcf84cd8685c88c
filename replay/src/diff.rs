//! `diff`: compares two rebuild reports, or a report and a live server's
//! projection snapshot (the binary file `projections::runner` writes,
//! recognised by its magic and turned into the same report), and lists the
//! differences entity by entity:
//!
//! ```text
//! stock KAOS-M@00000000-0000-0000-0000-000000000011: on_hand 5 -> 3
//! order 0e000001-...: only in B
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::ReplayError;
use crate::report::Report;

/// The first bytes of a projection snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KEDAISNP";

/// Reads a rebuild report (JSON) or a projection snapshot (binary).
pub fn load(path: &Path) -> Result<Report, ReplayError> {
    use std::io::Read;
    let reading = |e| ReplayError::io(format!("reading {}", path.display()), e);
    let mut start = Vec::with_capacity(SNAPSHOT_MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(SNAPSHOT_MAGIC.len() as u64).read_to_end(&mut start))
        .map_err(reading)?;
    let bad = |reason: String| ReplayError::BadInput {
        path: path.to_owned(),
        reason,
    };
    // A snapshot is read by the projections' own loader, never whole.
    if start == SNAPSHOT_MAGIC {
        let projections = kedai_projections::runner::load_snapshot(path)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("the snapshot disappeared while being read".into()))?;
        return Ok(Report::from_projections(&projections, None));
    }
    let bytes = std::fs::read(path).map_err(reading)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        bad("neither a rebuild report (JSON) nor a projection snapshot (KEDAISNP)".into())
    })?;
    Report::from_json(&text).map_err(|e| bad(format!("not a rebuild report: {e}")))
}

/// One difference between two reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The shop, for differences within one.
    pub shop: Option<String>,
    /// `log`, `shop`, `balances`, `stock`, `orders`, ...
    pub section: String,
    /// The entity within the section (a stock key, an order id), empty for
    /// sections that are one entity.
    pub entity: String,
    /// The field that differs; `None` when the whole entity is on one side
    /// only.
    pub field: Option<String>,
    /// The value in A and in B (`None`: absent on that side).
    pub a: Option<Value>,
    pub b: Option<Value>,
}

/// Every difference between `a` and `b`, in a stable order.
pub fn diff(a: &Report, b: &Report) -> Vec<Difference> {
    let (a, b) = (to_object(a), to_object(b));
    let mut out = Vec::new();
    // The log itself: position, skipped events.
    let top = |m: &Map<String, Value>| -> Map<String, Value> {
        m.iter()
            .filter(|(k, _)| *k != "shops" && *k != "format")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    compare_entity(&mut out, None, "log", "", &top(&a), &top(&b));
    let empty = Map::new();
    let shops_a = a.get("shops").and_then(Value::as_object).unwrap_or(&empty);
    let shops_b = b.get("shops").and_then(Value::as_object).unwrap_or(&empty);
    for shop in keys(shops_a, shops_b) {
        match (shops_a.get(&shop), shops_b.get(&shop)) {
            (Some(Value::Object(sa)), Some(Value::Object(sb))) => {
                compare_shop(&mut out, &shop, sa, sb)
            }
            (sa, sb) => out.push(Difference {
                shop: Some(shop.clone()),
                section: "shop".into(),
                entity: shop.clone(),
                field: None,
                a: sa.cloned(),
                b: sb.cloned(),
            }),
        }
    }
    out
}

fn to_object(report: &Report) -> Map<String, Value> {
    match serde_json::to_value(report) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn keys(a: &Map<String, Value>, b: &Map<String, Value>) -> BTreeSet<String> {
    a.keys().chain(b.keys()).cloned().collect()
}

fn compare_shop(
    out: &mut Vec<Difference>,
    shop: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
) {
    let shop = Some(shop.to_owned());
    let mut plain_a = Map::new();
    let mut plain_b = Map::new();
    for section in keys(a, b) {
        let (va, vb) = (a.get(&section), b.get(&section));
        let is_object = |v: Option<&Value>| v.is_none_or(Value::is_object);
        if !(is_object(va) && is_object(vb)) {
            // The shop's own facts (name, currency): one entity.
            if let Some(v) = va {
                plain_a.insert(section.clone(), v.clone());
            }
            if let Some(v) = vb {
                plain_b.insert(section.clone(), v.clone());
            }
            continue;
        }
        let empty = Map::new();
        let ma = va.and_then(Value::as_object).unwrap_or(&empty);
        let mb = vb.and_then(Value::as_object).unwrap_or(&empty);
        let is_collection = ma.values().chain(mb.values()).all(Value::is_object)
            && !(ma.is_empty() && mb.is_empty());
        if is_collection {
            for entity in keys(ma, mb) {
                match (ma.get(&entity), mb.get(&entity)) {
                    (Some(Value::Object(ea)), Some(Value::Object(eb))) => {
                        compare_entity(out, shop.clone(), &section, &entity, ea, eb)
                    }
                    (ea, eb) => out.push(Difference {
                        shop: shop.clone(),
                        section: section.clone(),
                        entity,
                        field: None,
                        a: ea.cloned(),
                        b: eb.cloned(),
                    }),
                }
            }
        } else {
            compare_entity(out, shop.clone(), &section, "", ma, mb);
        }
    }
    compare_entity(out, shop, "shop", "", &plain_a, &plain_b);
}

/// Compares two entities field by field (nested fields as `a.b`).
fn compare_entity(
    out: &mut Vec<Difference>,
    shop: Option<String>,
    section: &str,
    entity: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
) {
    let (fa, fb) = (flatten(a), flatten(b));
    let fields: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    for field in fields {
        let (va, vb) = (fa.get(field), fb.get(field));
        if va != vb {
            out.push(Difference {
                shop: shop.clone(),
                section: section.to_owned(),
                entity: entity.to_owned(),
                field: Some(field.clone()),
                a: va.cloned(),
                b: vb.cloned(),
            });
        }
    }
}

fn flatten(m: &Map<String, Value>) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in m {
        walk(k, v, &mut out);
    }
    out
}

/// What a section's entities are called in the listing.
fn entity_word(section: &str) -> &str {
    match section {
        "orders" => "order",
        "withdrawals" => "withdrawal",
        "sales_by_month" => "sales",
        "sales_total" => "sales total",
        "order_counts" => "order counts",
        other => other,
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::Null) => "none".into(),
        Some(Value::String(s)) if s.is_empty() => "\"\"".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The differences as text, one per line.
pub fn render_text(diffs: &[Difference]) -> String {
    let shops: BTreeSet<&String> = diffs.iter().filter_map(|d| d.shop.as_ref()).collect();
    let many_shops = shops.len() > 1;
    let mut out = String::new();
    for d in diffs {
        if many_shops && let Some(shop) = &d.shop {
            let _ = write!(out, "shop {shop}: ");
        }
        let word = entity_word(&d.section);
        let subject = if d.entity.is_empty() {
            word.to_owned()
        } else {
            format!("{word} {}", d.entity)
        };
        match &d.field {
            Some(field) => {
                let _ = writeln!(
                    out,
                    "{subject}: {field} {} -> {}",
                    show(d.a.as_ref()),
                    show(d.b.as_ref())
                );
            }
            None => {
                let side = if d.a.is_some() { "A" } else { "B" };
                let _ = writeln!(out, "{subject}: only in {side}");
            }
        }
    }
    out
}

/// The differences as JSON.
pub fn render_json(a: &Path, b: &Path, diffs: &[Difference]) -> Value {
    json!({
        "a": a.display().to_string(),
        "b": b.display().to_string(),
        "equal": diffs.is_empty(),
        "differences": diffs.iter().map(|d| json!({
            "shop": d.shop,
            "section": d.section,
            "entity": d.entity,
            "field": d.field,
            "a": d.a,
            "b": d.b,
        })).collect::<Vec<_>>(),
    })
}

/// Keeps only one shop in a report.
pub fn only_shop(report: &mut Report, shop: &str) {
    report.shops.retain(|id, _| id == shop);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedai_engine::ShopId;
    use kedai_projections::{Projections, ShopView};

    fn report(shops: &[u128], position: u64) -> Report {
        let mut p = Projections::new();
        p.position = position;
        for s in shops {
            p.shops
                .insert(ShopId(uuid::Uuid::from_u128(*s)), ShopView::default());
        }
        Report::from_projections(&p, None)
    }

    #[test]
    fn equal_reports_have_no_differences() {
        assert!(diff(&report(&[1, 2], 9), &report(&[1, 2], 9)).is_empty());
    }

    #[test]
    fn shops_and_fields_on_one_side_are_named() {
        let (a, mut b) = (report(&[1], 9), report(&[1, 2], 10));
        let shop = uuid::Uuid::from_u128(1).to_string();
        b.shops.get_mut(&shop).unwrap().name = "Toko Baru".into();
        let diffs = diff(&a, &b);
        let text = render_text(&diffs);
        let other = uuid::Uuid::from_u128(2);
        assert_eq!(
            text,
            format!(
                "log: position 9 -> 10\nshop {shop}: shop: name \"\" -> Toko Baru\nshop {other}: shop {other}: only in B\n"
            )
        );
        let json = render_json(Path::new("a"), Path::new("b"), &diffs);
        assert_eq!(json["equal"], false);
        assert_eq!(json["differences"].as_array().unwrap().len(), 3);
    }
}
