//! `copy` through the binary: a log written by the fixtures generator
//! (three shops, a few thousand events, many segments) is copied into
//! PostgreSQL (`KEDAI_TEST_DATABASE_URL` or a throwaway server) and from
//! there into a new log directory. `verify` passes on both copies with the
//! source's head hash, and every record body is the source's, byte for
//! byte, as read from the segment files and the table themselves. Copying
//! into a destination that holds anything is refused and changes nothing,
//! unless it is resumed (`--resume`) and holds the source's first records.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::store::import::Verbatim;
use kedai_engine::store::log::format::{Frame, SEGMENT_HEADER_LEN, read_frame};
use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::store::postgres::throwaway::test_database;
use kedai_fixtures::{FixtureConfig, generate};

/// A data directory whose log (in 64 KiB segments) the fixtures
/// generator wrote: three shops, a few thousand events.
async fn fixture_data_dir() -> (tempfile::TempDir, u64) {
    let data = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes_max: 64 << 10,
        ..LogOptions::default()
    };
    let store = Arc::new(LogStore::open_with(data.path().join("log"), options).unwrap());
    let engine = Engine::new(store.clone(), EngineOptions::default());
    let config = FixtureConfig {
        shops: 3,
        orders_per_shop: 120,
        days: 14,
        ..FixtureConfig::demo()
    };
    let summary = generate(&engine, &config, &mut |_| {}).await.unwrap();
    drop(engine);
    drop(store);
    (data, summary.last_position)
}

/// Every record body of a log directory, read from its segment files.
fn log_bodies(log: &Path) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for segment in segments(log) {
        let bytes = std::fs::read(&segment).unwrap();
        let mut offset = SEGMENT_HEADER_LEN;
        while let Frame::Record { body, next } = read_frame(&bytes, offset) {
            bodies.push(body.to_vec());
            offset = next;
        }
    }
    bodies
}

/// Every record body of a database, in position order, and whether the
/// positions run 1, 2, 3...
async fn table_bodies(url: &str) -> Vec<Vec<u8>> {
    let client = sql(url).await;
    let rows = client
        .query("SELECT position, body FROM events ORDER BY position", &[])
        .await
        .unwrap();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            assert_eq!(row.get::<_, i64>(0), i as i64 + 1);
            row.get(1)
        })
        .collect()
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// What a database holds, to see that a refused copy changed nothing.
async fn table_state(url: &str) -> (i64, String, i64) {
    let client = sql(url).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM events), \
                    (SELECT md5(string_agg(md5(body), '' ORDER BY position)) FROM events), \
                    (SELECT last_position FROM log_head)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Every file under a directory with its contents.
fn dir_state(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn verify_json(args: &[&str]) -> serde_json::Value {
    let (code, v) = replay_json(args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["intact"], true, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_goes_to_postgres_and_back_byte_for_byte() {
    let (data, last) = fixture_data_dir().await;
    let data_dir = data.path().to_str().unwrap();
    let log = data.path().join("log");
    assert!(last > 2_000, "only {last} events");
    assert!(segments(&log).len() > 10);
    let source = verify_json(&["--data", data_dir, "verify"]);
    let head = source["head_hash"].as_str().unwrap().to_owned();
    let bodies = log_bodies(&log);
    assert_eq!(bodies.len() as u64, last);

    let db = test_database().await.expect("a test database");
    let url = db.url.as_str();
    let (code, v) = replay_json(&["copy", "--from", data_dir, "--to", url]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (&v["copied"], &v["last_position"], &v["passed"]),
        (&last.into(), &last.into(), &true.into()),
        "{v}"
    );
    assert_eq!(v["source_head_hash"], head.as_str());
    assert_eq!(v["destination"]["head_hash"], head.as_str());
    let in_pg = verify_json(&["--database-url", url, "verify"]);
    assert_eq!(
        (in_pg["events"].as_u64(), &in_pg["head_hash"]),
        (Some(last), &source["head_hash"])
    );
    assert!(
        table_bodies(url).await == bodies,
        "the table's bodies are the log's"
    );

    let back_root = tempfile::tempdir().unwrap();
    let back = back_root.path().join("kedai");
    let back_dir = back.to_str().unwrap();
    let out = replay(&["copy", "--from", url, "--to", back_dir]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("copied {} events", thousands(last)))
            && text.contains("copy verified: intact")
            && text.contains(&format!("head hash: {head} (the source's)")),
        "{text}"
    );
    let in_back = verify_json(&["--data", back_dir, "verify"]);
    assert_eq!(in_back["head_hash"], source["head_hash"]);
    assert!(
        log_bodies(&back.join("log")) == bodies,
        "the copy's records are the source's"
    );

    // Into a destination that holds something: refused, nothing changed.
    let before = table_state(url).await;
    let out = replay(&["copy", "--from", data_dir, "--to", url]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("already holds events (positions 1 to {last})")),
        "{}",
        stderr(&out)
    );
    assert_eq!(table_state(url).await, before);
    let before = dir_state(&back);
    let out = replay(&["copy", "--from", url, "--to", back_dir]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert_eq!(dir_state(&back), before);
    let out = replay(&[
        "--data", data_dir, "copy", "--from", data_dir, "--to", back_dir,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--from and --to"), "{}", stderr(&out));
}

/// An empty log into a database without kedai's schema (the copy creates
/// it), and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_ledger_copies_to_an_empty_ledger() {
    let root = tempfile::tempdir().unwrap();
    drop(LogStore::open(root.path().join("source/log")).unwrap());
    let source = root.path().join("source");
    let db = test_database().await.expect("a test database");
    let back = root.path().join("back");
    for (from, to) in [
        (source.to_str().unwrap(), db.url.as_str()),
        (db.url.as_str(), back.to_str().unwrap()),
    ] {
        let (code, v) = replay_json(&["copy", "--from", from, "--to", to]);
        assert_eq!(
            (code, &v["copied"], &v["passed"]),
            (0, &0.into(), &true.into()),
            "{v}"
        );
    }
    let v = verify_json(&["--data", back.to_str().unwrap(), "verify"]);
    assert_eq!(v["events"], 0);
}

/// A data directory whose log holds `bodies` (the first records of
/// another log, as a copy that stopped part way leaves them).
async fn partial_copy(bodies: &[Vec<u8>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path().join("log")).unwrap();
    store.import(bodies.to_vec()).await.unwrap();
    drop(store);
    dir
}

/// `--resume` continues a copy that stopped part way, into a directory
/// and into PostgreSQL, and brings it to the source's end byte for byte;
/// run again, it copies nothing. A destination that holds anything but
/// the source's first records (another ledger, or more than the source)
/// is refused and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_stopped_is_resumed_and_only_from_its_own_source() {
    let (data, last) = fixture_data_dir().await;
    let data_dir = data.path().to_str().unwrap();
    let bodies = log_bodies(&data.path().join("log"));
    let head = verify_json(&["--data", data_dir, "verify"])["head_hash"].clone();
    let held = 100;

    // Into a directory.
    let partial = partial_copy(&bodies[..held]).await;
    let to = partial.path().to_str().unwrap();
    let before = dir_state(partial.path());
    let out = replay(&["copy", "--from", data_dir, "--to", to]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("is not empty") && stderr(&out).contains("--resume"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dir_state(partial.path()), before);
    let (code, v) = replay_json(&["copy", "--resume", "--from", data_dir, "--to", to]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (&v["resumed_from"], &v["copied"], &v["last_position"]),
        (&held.into(), &(last - held as u64).into(), &last.into()),
        "{v}"
    );
    assert_eq!(
        (&v["passed"], &v["destination"]["head_hash"]),
        (&true.into(), &head)
    );
    assert!(log_bodies(&partial.path().join("log")) == bodies);
    let out = replay(&["copy", "--resume", "--from", data_dir, "--to", to]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("copied 0 events (0 bytes of records, 0 batches)")
            && text.contains(&format!(
                "it held positions 1 to {} already",
                thousands(last)
            ))
            && text.contains("copy verified: intact"),
        "{text}"
    );

    // Another ledger's records, or more than the source holds: refused.
    let (_other, other_log, other_last) = traded_log(30).await;
    let other_dir = other_log.to_str().unwrap();
    assert!(
        other_last > held as u64 && other_last < last,
        "{other_last} events"
    );
    let before = dir_state(partial.path());
    let out = replay(&["copy", "--resume", "--from", other_dir, "--to", to]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("the source ends at position {other_last}")),
        "{}",
        stderr(&out)
    );
    let stopped = partial_copy(&bodies[..held]).await;
    let stopped_dir = stopped.path().to_str().unwrap();
    let out = replay(&["copy", "--resume", "--from", other_dir, "--to", stopped_dir]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("the record at position {held} differs")),
        "{}",
        stderr(&out)
    );
    assert_eq!(dir_state(partial.path()), before);
    assert!(log_bodies(&stopped.path().join("log")) == bodies[..held]);
    let out = replay(&[
        "copy",
        "--resume",
        "--from",
        data_dir,
        "--to",
        data.path().join("log").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("no kedai log"), "{}", stderr(&out));

    // Into PostgreSQL.
    let db = test_database().await.expect("a test database");
    let url = db.url.as_str();
    let (code, v) = replay_json(&["copy", "--from", stopped_dir, "--to", url]);
    assert_eq!((code, &v["copied"]), (0, &held.into()), "{v}");
    let out = replay(&["copy", "--from", data_dir, "--to", url]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    let before = table_state(url).await;
    let out = replay(&["copy", "--resume", "--from", other_dir, "--to", url]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("differs"), "{}", stderr(&out));
    assert_eq!(table_state(url).await, before);
    let (code, v) = replay_json(&["copy", "--resume", "--from", data_dir, "--to", url]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (&v["resumed_from"], &v["copied"], &v["passed"]),
        (&held.into(), &(last - held as u64).into(), &true.into()),
        "{v}"
    );
    assert!(
        table_bodies(url).await == bodies,
        "the table's bodies are the log's"
    );

    // Resuming into a destination that holds nothing yet (a database
    // without kedai's schema, a directory that does not exist) copies all.
    let fresh = test_database().await.expect("a test database");
    let new_root = tempfile::tempdir().unwrap();
    let new_dir = new_root.path().join("kedai");
    for to in [fresh.url.as_str(), new_dir.to_str().unwrap()] {
        let (code, v) = replay_json(&["copy", "--resume", "--from", stopped_dir, "--to", to]);
        assert_eq!(
            (code, &v["resumed_from"], &v["copied"], &v["passed"]),
            (0, &0.into(), &held.into(), &true.into()),
            "{v}"
        );
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    kedai_replay::progress::thousands(n)
}
