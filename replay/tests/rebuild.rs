//! `rebuild` and `diff` through the binary: a rebuild as of a position or
//! a moment equals the projections the projections crate folds up to the
//! same position; the same data gives the same bytes twice; `diff` finds a
//! changed stock level, compares a report with a server's snapshot, and
//! answers with its exit code; the tool reads a log while a writer
//! appends to it, seeing a consistent, growing prefix; and a reader of its
//! output that goes away (`| head`) ends it quietly, not with a panic.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use kedai_engine::store::log::LogStore;
use kedai_engine::testkit::MALANG;
use kedai_engine::{EventStore, Position, RecordedEvent, Timestamp};
use kedai_projections::Projections;
use kedai_projections::runner::{rebuild, write_snapshot};
use kedai_replay::report::Report;

/// What the projections crate folds up to `position`, as a report.
async fn live_report(store: &dyn EventStore, position: Position) -> (Projections, String) {
    let p = rebuild(store, Projections::new(), Some(position), |_| {})
        .await
        .unwrap();
    let report = Report::from_projections(&p, None).to_json();
    (p, report)
}

fn rebuild_out(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["--data", data.to_str().unwrap(), "rebuild"];
    all.extend_from_slice(args);
    let out = replay(&all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

async fn all_events(store: &dyn EventStore) -> Vec<RecordedEvent> {
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
async fn rebuilds_as_of_a_position_or_a_moment_equal_the_live_projections() {
    let (data, log, last) = traded_log(60).await;
    let store = LogStore::open_read_only(&log).unwrap();
    let events = all_events(&store).await;
    assert_eq!(events.len() as u64, last);
    // A moment in the middle of the history, just after a command: the
    // prefix recorded by then ends at `p`.
    let middle = events.len() / 2;
    let p = (middle..events.len() - 1)
        .find(|&i| events[i].recorded_at < events[i + 1].recorded_at)
        .map(|i| events[i].position)
        .unwrap();
    let t = events[p as usize - 1].recorded_at;
    let (live, expected) = live_report(&store, p).await;
    assert!(live.shops.values().all(|s| !s.stock.levels.is_empty()));

    let by_position = rebuild_out(data.path(), &["--position", &p.to_string()]);
    assert_eq!(by_position, expected);
    let by_time = rebuild_out(data.path(), &["--as-of", &t.to_string()]);
    assert_eq!(by_time, expected);
    // The same moment written in the shop's time zone.
    let local = t
        .to_datetime()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap());
    let by_local_time = rebuild_out(data.path(), &["--as-of", &local.to_rfc3339()]);
    assert_eq!(by_local_time, expected);
    // A microsecond earlier leaves that command's events out.
    let earlier = rebuild_out(data.path(), &["--as-of", &Timestamp(t.0 - 1).to_string()]);
    let earlier = Report::from_json(&earlier).unwrap();
    assert!(earlier.position < p);
    assert_eq!(events[earlier.position as usize].recorded_at, t);
    // Before the first event: nothing.
    let nothing = rebuild_out(data.path(), &["--as-of", "2000-01-01T00:00:00Z"]);
    assert_eq!(Report::from_json(&nothing).unwrap().position, 0);
    // The whole log, and the report's contents.
    let whole = rebuild_out(data.path(), &["--position", &last.to_string()]);
    assert_eq!(whole, live_report(&store, last).await.1);
    let report = Report::from_json(&whole).unwrap();
    let shop = report.shops.values().next().unwrap();
    assert_eq!(shop.name, "Toko Batik Malang");
    assert!(
        shop.sales_by_month.len() >= 2,
        "{:?}",
        shop.sales_by_month.keys()
    );
    assert!(shop.orders.values().any(|o| o.status == "delivered"));
    assert!(shop.orders.values().any(|o| o.status == "cancelled"));
    assert!(
        shop.balances.ledger_entries > 0,
        "COD deliveries reach the ledger"
    );
    assert!(shop.stock.contains_key(&format!("KAOS-M@{}", MALANG.0)));
    // Past the end: a clear error.
    let out = replay(&[
        "--data",
        data.path().to_str().unwrap(),
        "rebuild",
        "--position",
        &(last + 1).to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("past the end of the log"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn the_same_data_gives_the_same_bytes() {
    let (data, _log, last) = traded_log(30).await;
    let position = last.to_string();
    let first = rebuild_out(data.path(), &["--position", &position]);
    let second = rebuild_out(data.path(), &["--position", &position]);
    assert_eq!(first, second);
    let file = data.path().join("report.json");
    let out = replay(&[
        "--data",
        data.path().to_str().unwrap(),
        "rebuild",
        "--position",
        &position,
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    // Keys are sorted at every level.
    let value: serde_json::Value = serde_json::from_str(&first).unwrap();
    fn sorted(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                let keys: Vec<&String> = m.keys().collect();
                keys.windows(2).all(|w| w[0] < w[1]) && m.values().all(sorted)
            }
            serde_json::Value::Array(a) => a.iter().all(sorted),
            _ => true,
        }
    }
    assert!(sorted(&value));
    // The report's own serialisation sorts keys (fields are declared in
    // alphabetical order): the same bytes as sorting a JSON tree.
    assert_eq!(first, Report::from_json(&first).unwrap().to_sorted_json());
    // One shop: the only one here, or one with no events.
    let shop = "00000000-0000-0000-0000-000000000005";
    assert_eq!(
        rebuild_out(data.path(), &["--position", &position, "--shop", shop]),
        first
    );
    let other = rebuild_out(
        data.path(),
        &[
            "--position",
            &position,
            "--shop",
            "00000000-0000-0000-0000-000000000099",
        ],
    );
    assert!(Report::from_json(&other).unwrap().shops.is_empty());
    assert!(first.find("\"balances\"").unwrap() < first.find("\"stock\"").unwrap());
}

#[tokio::test]
async fn diff_lists_a_changed_stock_level_and_compares_with_a_snapshot() {
    let (data, log) = data_dir();
    let d = data.path().to_str().unwrap().to_owned();
    let (store, world) = world_on_log(&log).await;
    let end = trade(&world, 1, 10, Timestamp(OPENING.0 + HOUR)).await;
    let before = store.last_position().await.unwrap();
    let (level_before, _) = world.stock("KAOS-M", MALANG).await;
    // A delivery of stock and one more order of 2 shirts, shipped.
    trade(&world, 201, 1, end).await;
    let after = store.last_position().await.unwrap();
    let (level_after, _) = world.stock("KAOS-M", MALANG).await;
    assert_eq!(level_after, level_before + 10 - 2);

    let a = data.path().join("a.json");
    let b = data.path().join("b.json");
    for (file, p) in [(&a, before), (&b, after)] {
        let out = replay(&[
            "--data",
            &d,
            "rebuild",
            "--position",
            &p.to_string(),
            "--output",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = replay(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let line = format!(
        "stock KAOS-M@{}: on_hand {level_before} -> {level_after}",
        MALANG.0
    );
    assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    assert!(
        text.contains(&format!("log: position {before} -> {after}")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("order ") && l.ends_with(": only in B")),
        "{text}"
    );
    let (code, v) = replay_json(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(v["equal"], false);
    assert!(
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["section"] == "stock"
                && d["field"] == "on_hand"
                && d["a"] == level_before
                && d["b"] == level_after)
    );

    // A report against itself, and against a server's snapshot at the
    // same position.
    let out = replay(&["diff", b.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (projections, _) = live_report(&*store, after).await;
    let snapshot = data.path().join("projections.snapshot");
    assert_eq!(projections.position, after);
    write_snapshot(&snapshot, &projections).unwrap();
    let out = replay(&["diff", b.to_str().unwrap(), snapshot.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = replay(&["diff", a.to_str().unwrap(), snapshot.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(&line), "{}", stdout(&out));

    // Files that are neither: no answer.
    let junk = data.path().join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    let out = replay(&["diff", a.to_str().unwrap(), junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a rebuild report"),
        "{}",
        stderr(&out)
    );
    drop(world);
    drop(store);
}

#[test]
fn it_reads_while_a_writer_appends() {
    let (data, log) = data_dir();
    let d = data.path().to_str().unwrap().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    // The log is there once the writer has opened it: reading before that
    // finds no log at all (a race this test once lost on a busy machine).
    let (opened, log_is_open) = std::sync::mpsc::channel();
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let (store, world) = world_on_log(&log).await;
                opened.send(()).unwrap();
                let mut t = Timestamp(OPENING.0 + HOUR);
                let mut n = 1;
                while !stop.load(Ordering::Relaxed) {
                    t = trade(&world, n, 5, t).await;
                    n += 5;
                }
                drop(world);
                store.last_position().await.unwrap()
            })
        })
    };
    let verified = |min: u64| -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, v) = replay_json(&["--data", &d, "verify"]);
            assert_eq!(code, 0, "a live log verifies: {v}");
            let events = v["events"].as_u64().unwrap();
            if events > min {
                return events;
            }
            assert!(Instant::now() < deadline, "the writer made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    log_is_open
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer opens the log");
    let first = verified(100);
    let second = verified(first);
    let third = verified(second);
    assert!(first < second && second < third);
    // A rebuild of what was verified, and to the end of what is there.
    let out = replay(&["--data", &d, "rebuild", "--position", &second.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(Report::from_json(&stdout(&out)).unwrap().position, second);
    let out = replay(&["--data", &d, "rebuild", "--as-of", "2100-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(Report::from_json(&stdout(&out)).unwrap().position >= second);
    let (code, v) = replay_json(&[
        "--data",
        &d,
        "export",
        "--format",
        "jsonl",
        "--output",
        "/dev/null",
    ]);
    assert_eq!(code, 0, "{v}");
    assert!(v["written"].as_u64().unwrap() >= third);
    stop.store(true, Ordering::Relaxed);
    let last = writer.join().unwrap();
    let (code, v) = replay_json(&["--data", &d, "verify"]);
    assert_eq!((code, v["events"].as_u64().unwrap()), (0, last));
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_tool_quietly() {
    let (data, _log, last) = traded_log(20).await;
    let d = data.path().to_str().unwrap();
    let report = data.path().join("report.json");
    let r = report.to_str().unwrap();
    let to = last.to_string();
    std::fs::write(&report, rebuild_out(data.path(), &["--position", &to])).unwrap();
    // Each prints its summary to stdout at the end, after the reader
    // (`| head`, say) has closed the pipe.
    for args in [
        vec!["--data", d, "verify"],
        vec!["--data", d, "--json", "verify"],
        vec![
            "--data",
            d,
            "--json",
            "rebuild",
            "--position",
            &to,
            "--output",
            r,
        ],
        vec!["diff", r, r],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kedai-replay"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
