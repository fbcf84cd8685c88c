//! `export`, `history` and the tool's errors, through the binary: JSON
//! Lines with one line per event and every envelope field, CSV that a CSV
//! reader reads back with the payload as a JSON column, the shop and time
//! filters, an entity's history by stream name and by shortcut, and clear
//! errors (no panic, no backtrace) for a missing directory, a directory
//! without a log, and a missing source.

mod common;

use std::collections::BTreeSet;

use common::*;
use kedai_engine::store::log::LogStore;
use kedai_engine::testkit::{MALANG, SURABAYA, order_id};
use kedai_engine::{EventStore, RecordedEvent};

const SHOP: &str = "00000000-0000-0000-0000-000000000005";

const FIELDS: [&str; 14] = [
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
    "payload",
];

async fn events_of(log: &std::path::Path) -> Vec<RecordedEvent> {
    let store = LogStore::open_read_only(log).unwrap();
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.position);
        let page = store.read_all(after, 10_000).await.unwrap();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

#[tokio::test]
async fn json_lines_hold_every_event_with_every_field() {
    let (data, log, last) = traded_log(20).await;
    let events = events_of(&log).await;
    let out = replay(&[
        "--data",
        data.path().to_str().unwrap(),
        "export",
        "--format",
        "jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, last);
    for (line, e) in lines.iter().zip(&events) {
        let keys: BTreeSet<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, FIELDS.into_iter().collect(), "{line}");
        assert_eq!(line["position"], e.position);
        assert_eq!(line["shop"], SHOP);
        assert_eq!(line["stream"], &*e.stream.name);
        assert_eq!(line["version"], e.version);
        assert_eq!(line["event_id"], e.event_id.to_string());
        assert_eq!(line["recorded_at"], e.recorded_at.to_string());
        assert_eq!(line["actor_role"], "staff");
        assert_eq!(line["actor_id"], "ayu");
        assert_eq!(line["correlation_id"], e.correlation_id.to_string());
        assert_eq!(line["event_type"], &*e.event_type);
        assert_eq!(line["schema_version"], e.schema_version);
        assert!(line["payload"].is_object(), "decoded: {line}");
        assert!(
            line["payload"].get("hex").is_none(),
            "every type is known: {line}"
        );
    }
    let placed = lines
        .iter()
        .find(|l| l["event_type"] == "OrderPlaced")
        .unwrap();
    assert_eq!(placed["payload"]["order_id"], order_id(1).to_string());
    assert_eq!(placed["payload"]["lines"][0]["sku"], "KAOS-M");
}

#[tokio::test]
async fn csv_reads_back_with_the_payload_as_json() {
    let (data, log, last) = traded_log(20).await;
    let events = events_of(&log).await;
    let file = data.path().join("events.csv");
    let (code, v) = replay_json(&[
        "--data",
        data.path().to_str().unwrap(),
        "export",
        "--format",
        "csv",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["written"], last);
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, FIELDS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as u64, last);
    for (row, e) in rows.iter().zip(&events) {
        assert_eq!(row.len(), FIELDS.len());
        assert_eq!(row[0], e.position.to_string());
        assert_eq!(row[2], *e.stream.name);
        assert_eq!(row[5], e.recorded_at.to_string());
        assert_eq!(row[10], *e.event_type);
        let payload: serde_json::Value = serde_json::from_str(&row[13]).unwrap();
        assert!(payload.is_object());
    }
}

#[tokio::test]
async fn exports_filter_by_shop_and_time() {
    let (data, log, _) = traded_log(20).await;
    let events = events_of(&log).await;
    let from = events[events.len() / 3].recorded_at;
    let to = events[2 * events.len() / 3].recorded_at;
    let expected = events
        .iter()
        .filter(|e| e.recorded_at >= from && e.recorded_at < to)
        .count();
    assert!(expected > 0);
    let d = data.path().to_str().unwrap();
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let out = replay(&[
        "--data", d, "export", "--format", "jsonl", "--shop", SHOP, "--from", &from_s, "--to",
        &to_s,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected);
    assert!(lines.iter().all(|l| {
        let t = l["recorded_at"].as_str().unwrap();
        t >= from_s.as_str() && t < to_s.as_str()
    }));
    let other = "00000000-0000-0000-0000-000000000099";
    let out = replay(&["--data", d, "export", "--format", "jsonl", "--shop", other]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).is_empty(), "no event of another shop");
    let bad = replay(&[
        "--data",
        d,
        "export",
        "--format",
        "jsonl",
        "--from",
        "last tuesday",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("RFC 3339"), "{}", stderr(&bad));
}

#[tokio::test]
async fn history_shows_an_entity_by_name_or_by_shortcut() {
    let (data, _log, _) = traded_log(12).await;
    let d = data.path().to_str().unwrap();
    let order = order_id(1).to_string();
    let (code, by_order) =
        replay_json(&["--data", d, "history", "--shop", SHOP, "--order", &order]);
    assert_eq!(code, 0, "{by_order}");
    let stream = format!("order-{order}");
    let (_, by_name) = replay_json(&["--data", d, "history", "--shop", SHOP, "--stream", &stream]);
    assert_eq!(by_order, by_name);
    let events = by_order["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "OrderProcessing",
            "OrderPacked",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(events[3]["payload"]["awb"], "JNE00000001");

    // A SKU in one warehouse, and in every warehouse (merged in log order).
    let malang = MALANG.0.to_string();
    let (_, one) = replay_json(&[
        "--data",
        d,
        "history",
        "--shop",
        SHOP,
        "--sku",
        "KAOS-L",
        "--warehouse",
        &malang,
    ]);
    let (_, all) = replay_json(&["--data", d, "history", "--shop", SHOP, "--sku", "KAOS-L"]);
    assert_eq!(all["streams"].as_array().unwrap().len(), 2);
    let surabaya = format!("stock-KAOS-L@{}", SURABAYA.0);
    assert!(
        all["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["stream"] == surabaya.as_str())
    );
    let positions: Vec<u64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert!(one["events"].as_array().unwrap().len() < positions.len());

    // The text form.
    let out = replay(&["--data", d, "history", "--shop", SHOP, "--order", &order]);
    let text = stdout(&out);
    assert!(text.starts_with(&format!("5 events in {stream}")), "{text}");
    assert!(text.contains("staff:ayu OrderPlaced (schema 1)"), "{text}");
    // An entity with no events: an empty history, not an error.
    let nobody = order_id(999).to_string();
    let (code, none) = replay_json(&["--data", d, "history", "--shop", SHOP, "--order", &nobody]);
    assert_eq!((code, none["events"].as_array().unwrap().len()), (0, 0));
}

#[test]
fn errors_are_clear_and_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--data", missing.to_str().unwrap(), "verify"],
            "does not exist",
        ),
        (
            vec!["--data", dir.path().to_str().unwrap(), "verify"],
            "holds no kedai log",
        ),
        (
            vec![
                "--data",
                dir.path().to_str().unwrap(),
                "rebuild",
                "--position",
                "1",
            ],
            "holds no kedai log",
        ),
        (vec!["verify"], "--data DIR"),
        (
            vec![
                "--database-url",
                "postgres://nobody@127.0.0.1:1/none",
                "verify",
            ],
            "PostgreSQL",
        ),
    ];
    for (args, expected) in cases {
        let out = replay(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: {expected:?} not in {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    // An empty log directory is an empty ledger.
    std::fs::create_dir(dir.path().join("log")).unwrap();
    let (code, v) = replay_json(&["--data", dir.path().to_str().unwrap(), "verify"]);
    assert_eq!((code, &v["events"]), (0, &serde_json::json!(0)));
    // Usage errors come from the argument parser, also with code 2.
    let out = replay(&[
        "rebuild",
        "--position",
        "1",
        "--as-of",
        "2025-10-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
