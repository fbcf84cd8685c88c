//! What the replay tests share: a log written through the real command
//! engine (the engine's test world: a shop with two warehouses, products
//! and customers), a day-by-day trade on it, and running the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedai_engine::command::Command as EngineCommand;
use kedai_engine::domain::ids::{OrderId, PaymentId};
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{PayOrder, PaymentMethod, Transition};
use kedai_engine::domain::stock::StockMove;
use kedai_engine::store::log::format::{Frame, SEGMENT_HEADER_LEN, body_position, read_frame};
use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::testkit::{MALANG, SURABAYA, World, line, order_id, place, sku};
use kedai_engine::{EventStore, Position, Timestamp};
use uuid::Uuid;

/// When the test world's shop opens: 2025-10-01T00:00:00Z.
pub const OPENING: Timestamp = Timestamp(1_759_276_800_000_000);
pub const HOUR: i64 = 3_600_000_000;

/// Small segments, so a few hundred events span several sealed segments.
pub fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes_max: 4096,
        ..LogOptions::default()
    }
}

/// A data directory laid out as the server does: the log in `DIR/log`.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("log");
    (data, log)
}

/// A writer on `log` with small segments, and the world on it.
pub async fn world_on_log(log: &Path) -> (Arc<LogStore>, World) {
    let store = Arc::new(LogStore::open_with(log, small_segments()).unwrap());
    let world = World::on_at(store.clone(), true, OPENING).await;
    (store, world)
}

async fn at(w: &World, t: Timestamp, command: EngineCommand) {
    if let Err(e) = w.run_at(t, command.clone()).await {
        panic!("{command:?} at {t}: {e}");
    }
}

/// `orders` orders, one every 20 hours from `start` (so they span weeks
/// and months): stock received every fifth, some paid, some cash on
/// delivery, some shipped and delivered, some cancelled, some left placed.
/// Returns the time after the last one.
pub async fn trade(w: &World, first: u128, orders: u128, start: Timestamp) -> Timestamp {
    let mut t = start;
    for i in first..first + orders {
        let next = |t: Timestamp, minutes: i64| Timestamp(t.0 + minutes * 60_000_000);
        if (i - first).is_multiple_of(5) {
            for (s, wh, n) in [("KAOS-M", MALANG, 10), ("KAOS-L", SURABAYA, 6)] {
                at(
                    w,
                    t,
                    EngineCommand::MoveStock(StockMove::Receive {
                        sku: sku(s),
                        warehouse_id: wh,
                        quantity: n,
                        note: format!("kiriman {i}"),
                    }),
                )
                .await;
            }
        }
        let id = order_id(i);
        let mut order = place(id, vec![line("KAOS-M", 1 + (i % 2) as i64)]);
        order.cod = i % 8 == 1;
        t = next(t, 10);
        at(w, t, EngineCommand::PlaceOrder(order)).await;
        match i % 4 {
            0 => {
                t = next(t, 30);
                at(
                    w,
                    t,
                    EngineCommand::PayOrder {
                        order_id: id,
                        payment: PayOrder {
                            payment_id: PaymentId(Uuid::from_u128(0xba00 + i)),
                            amount: Money(20_000),
                            method: PaymentMethod::BankTransfer,
                            bank_account: Some("BCA 1234567890".into()),
                            paid_at: None,
                        },
                    },
                )
                .await;
            }
            1 => {
                for transition in [
                    Transition::Process,
                    Transition::Pack,
                    Transition::Ship {
                        awb: format!("JNE{i:08}"),
                    },
                    Transition::Deliver,
                ] {
                    t = next(t, 45);
                    transition_at(w, t, id, transition).await;
                }
            }
            2 => {
                t = next(t, 15);
                transition_at(
                    w,
                    t,
                    id,
                    Transition::Cancel {
                        reason: "berubah pikiran".into(),
                    },
                )
                .await;
            }
            _ => {}
        }
        t = Timestamp(start.0 + (i - first + 1) as i64 * 20 * HOUR);
    }
    t
}

async fn transition_at(w: &World, t: Timestamp, order: OrderId, transition: Transition) {
    at(
        w,
        t,
        EngineCommand::TransitionOrder {
            order_id: order,
            transition,
        },
    )
    .await;
}

/// A closed log in `DIR/log` after `orders` orders of trade.
pub async fn traded_log(orders: u128) -> (tempfile::TempDir, PathBuf, Position) {
    let (data, log) = data_dir();
    let (store, world) = world_on_log(&log).await;
    trade(&world, 1, orders, Timestamp(OPENING.0 + HOUR)).await;
    let last = store.last_position().await.unwrap();
    drop(world);
    drop(store);
    (data, log, last)
}

/// Runs the binary with these arguments.
pub fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kedai-replay"))
        .args(args)
        .output()
        .expect("kedai-replay runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the binary with `--json` and parses its stdout.
pub fn replay_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = replay(&all);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

/// The segment files of a log directory, in order.
pub fn segments(log: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Each record of a segment: (offset, end, position).
pub fn records(segment: &Path) -> Vec<(usize, usize, Position)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    while let Frame::Record { body, next } = read_frame(&bytes, offset) {
        out.push((offset, next, body_position(body).unwrap()));
        offset = next;
    }
    out
}

/// Waits (bounded) until every sealed segment has its sidecar index: the
/// writer writes them in the background.
pub fn wait_for_indexes(log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let segs = segments(log);
        let sealed = &segs[..segs.len().saturating_sub(1)];
        if sealed.iter().all(|s| s.with_extension("idx").exists()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sidecar indexes were not written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A copy of a log directory's segment files (no lock, no indexes).
pub fn copy_log(log: &Path) -> (tempfile::TempDir, PathBuf) {
    let copy = tempfile::tempdir().unwrap();
    for seg in segments(log) {
        std::fs::copy(&seg, copy.path().join(seg.file_name().unwrap())).unwrap();
    }
    let path = copy.path().to_owned();
    (copy, path)
}
