//! A real crash: a child process appends to the log in a loop from many
//! tasks and prints every acknowledged event; the parent kills it with
//! SIGKILL at a random moment, reopens the log, and checks that every
//! acknowledged event is there, at its position, and the chain verifies.
//! Three rounds on the same directory, so later rounds start from a log
//! that was itself recovered from a crash.
//!
//! The child is this same test binary, started with an environment
//! variable that makes the test body run the append loop instead.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedai_engine::store::conformance::read_everything;
use kedai_engine::store::log::verify::verify;
use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::{
    Actor, AppendRequest, EventStore, ExpectedVersion, NewEvent, Role, ShopId, StoreError,
    StreamId, Timestamp,
};
use uuid::Uuid;

const CHILD_ENV: &str = "KEDAI_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_appends_survive_kill_9";
const WRITERS: usize = 16;
const ROUNDS: usize = 3;

fn options() -> LogOptions {
    LogOptions {
        // Small segments so that kills also land around segment rolls.
        segment_bytes_max: 256 << 10,
        ..LogOptions::default()
    }
}

/// The child: append until killed, printing `ack <position> <event id>`
/// after each acknowledgement.
fn child(dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Arc::new(LogStore::open_with(dir, options()).expect("child opens the log"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            let tx = tx.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(ShopId(Uuid::from_u128(1)), format!("writer-{w}"));
                for i in 0u64.. {
                    let events: Vec<NewEvent> = (0..(1 + i % 3))
                        .map(|_| NewEvent {
                            event_id: Uuid::now_v7(),
                            event_type: "CrashTested".into(),
                            schema_version: 1,
                            actor: Actor::new(Role::System, "crash-test"),
                            correlation_id: Uuid::now_v7(),
                            causation_id: None,
                            payload: vec![7; 200],
                        })
                        .collect();
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    let request = AppendRequest::single(
                        stream.clone(),
                        ExpectedVersion::Any,
                        Timestamp::now(),
                        events,
                    );
                    let outcome = store.append(request).await.expect("append");
                    for (k, id) in ids.iter().enumerate() {
                        let _ = tx.send(format!("ack {} {id}", outcome.first_position + k as u64));
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        while let Some(line) = rx.recv().await {
            writeln!(out, "{line}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: HashMap<u64, Uuid> = HashMap::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start child");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of acknowledgements.
        let target = 2_000 + round * 1_500;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        let mut lock_checked = false;
        while seen < target {
            assert!(Instant::now() < deadline, "child too slow: {seen} acks");
            let line = lines.next().expect("child output").expect("utf-8 line");
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let (position, id) = rest.split_once(' ').unwrap();
            acknowledged.insert(position.parse().unwrap(), id.parse().unwrap());
            seen += 1;
            if !lock_checked {
                let refused = LogStore::open(dir.path());
                assert!(
                    matches!(refused, Err(StoreError::Locked { .. })),
                    "a second process must be refused: {refused:?}"
                );
                lock_checked = true;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();

        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = LogStore::open_with(dir.path(), options()).expect("reopen after kill -9");
            let all = read_everything(&store).await;
            let by_position: HashMap<u64, Uuid> =
                all.iter().map(|e| (e.position, e.event_id)).collect();
            for (position, id) in &acknowledged {
                assert_eq!(
                    by_position.get(position),
                    Some(id),
                    "acknowledged event at {position} lost (round {round})"
                );
            }
            for (i, e) in all.iter().enumerate() {
                assert_eq!(e.position, i as u64 + 1);
            }
        });
        let report = verify(dir.path(), None, |_| {}).expect("chain verifies after the crash");
        assert!(report.last_position >= acknowledged.keys().copied().max().unwrap());
        assert_eq!(report.unfinished_tail_bytes, 0, "reopen cut any torn tail");
    }
}
