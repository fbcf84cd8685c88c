//! The shared bench harness: realistic events, the disk's raw limits, load
//! loops that keep N writers busy for a fixed time, and the median-of-runs
//! reporting every load scenario prints.
//!
//! Layout: `benches/` holds criterion benches of hot paths (`cargo bench
//! -p kedai-benches`); `src/bin/` holds load scenarios, each a binary that
//! prints the figures `benches/README.md` records. [`shop`] makes a bench
//! shop through the command engine and times order placement; [`http`]
//! runs the real `kedai serve` and talks to it over keep-alive HTTP
//! connections; [`plain_table`] is the PostgreSQL baseline kedai is
//! compared with.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod http;
pub mod plain_table;
pub mod shop;

use kedai_engine::{
    Actor, AppendRequest, EventStore, ExpectedVersion, NewEvent, Role, ShopId, StreamId, Timestamp,
};
use serde::Serialize;
use uuid::Uuid;

/// A payload shaped like an order line event: about 300 bytes of
/// MessagePack, the size PRODUCT.md's targets assume (200-400 bytes).
#[derive(Serialize)]
struct SamplePayload<'a> {
    order_id: Uuid,
    sku: String,
    warehouse: &'a str,
    quantity: u32,
    unit_price_minor: i64,
    unit_cost_minor: i64,
    customer_name: &'a str,
    phone: &'a str,
    address: &'a str,
    city: &'a str,
    province: &'a str,
    courier: &'a str,
    service: &'a str,
    note: &'a str,
}

/// MessagePack bytes of a realistic event payload, varied by `i`.
pub fn sample_payload(i: u64) -> Vec<u8> {
    let p = SamplePayload {
        order_id: Uuid::from_u128(u128::from(i) << 64 | 0x0192_0000_0000_7000_8000_0000_0000_0000),
        sku: format!(
            "KAOS-POLOS-{}-{}",
            ["S", "M", "L", "XL"][(i % 4) as usize],
            i % 97
        ),
        warehouse: "gudang-malang",
        quantity: 1 + (i % 5) as u32,
        unit_price_minor: 85_000 + (i % 7) as i64 * 5_000,
        unit_cost_minor: 52_000,
        customer_name: "Siti Rahmawati",
        phone: "6281234567890",
        address: "Jl. Soekarno Hatta No. 12, RT 03 RW 05, Kel. Jatimulyo",
        city: "Kota Malang",
        province: "Jawa Timur",
        courier: "JNE",
        service: "REG",
        note: "Tolong dikirim hari ini ya kak, terima kasih",
    };
    rmp_serde::to_vec_named(&p).expect("msgpack")
}

/// Distinct payloads the load loops cycle through, so that making an
/// event costs a copy, not an encoding (the store is what is measured).
const PAYLOAD_POOL: u64 = 1024;

static POOL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();

/// A realistic event with a fresh id.
pub fn sample_event(i: u64) -> NewEvent {
    let pool = POOL.get_or_init(|| (0..PAYLOAD_POOL).map(sample_payload).collect());
    let event_id = Uuid::now_v7();
    NewEvent {
        event_id,
        event_type: "OrderLineReserved".into(),
        schema_version: 1,
        actor: Actor::new(Role::Staff, "staff:ayu"),
        correlation_id: event_id,
        causation_id: None,
        payload: pool[(i % PAYLOAD_POOL) as usize].clone(),
    }
}

/// The shop all bench streams belong to.
pub fn bench_shop() -> ShopId {
    ShopId(Uuid::from_u128(0xbe4c))
}

/// An append of `batch` realistic events to `stream`.
pub fn sample_append(stream: &StreamId, batch: usize, seq: u64) -> AppendRequest {
    AppendRequest::single(
        stream.clone(),
        ExpectedVersion::Any,
        Timestamp::now(),
        (0..batch as u64).map(|k| sample_event(seq + k)).collect(),
    )
}

/// Keeps `writers` tasks appending `batch` events per append (each to its
/// own stream) for `duration`; returns events appended per second.
pub async fn append_load(
    store: Arc<dyn EventStore>,
    writers: usize,
    batch: usize,
    duration: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let (store, stop, events) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&events));
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(bench_shop(), format!("bench-writer-{w}"));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let request = sample_append(&stream, batch, seq);
                store.append(request).await.expect("append");
                seq += batch as u64;
                events.fetch_add(batch as u64, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer task");
    }
    events.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The disk's raw limits where `dir` lives.
#[derive(Debug, Clone, Copy)]
pub struct DiskLimits {
    /// 4 KiB write + fdatasync, appending to a growing file.
    pub fsyncs_per_sec_append: f64,
    /// 4 KiB write + fdatasync, overwriting an already-written file.
    pub fsyncs_per_sec_overwrite: f64,
    /// Sequential write of 512 MiB with one fdatasync at the end.
    pub write_mib_per_sec: f64,
}

/// Measures the raw limits of the disk under `dir` (takes a few seconds).
pub fn measure_disk(dir: &Path) -> std::io::Result<DiskLimits> {
    let path = dir.join("kedai-disk-probe");
    let block = vec![0x5au8; 4096];
    let probe = |overwrite: bool| -> std::io::Result<f64> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        if overwrite {
            f.write_all_at(&vec![0u8; 64 << 20], 0)?;
            f.sync_all()?;
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            f.write_all_at(&block, n * 4096)?;
            f.sync_data()?;
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    };
    let fsyncs_per_sec_append = probe(false)?;
    let fsyncs_per_sec_overwrite = probe(true)?;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let chunk = vec![0xa5u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..512 {
        f.write_all(&chunk)?;
    }
    f.sync_data()?;
    let write_mib_per_sec = 512.0 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(DiskLimits {
        fsyncs_per_sec_append,
        fsyncs_per_sec_overwrite,
        write_mib_per_sec,
    })
}

/// CPU time this thread has run so far (`CLOCK_THREAD_CPUTIME_ID`).
/// Unlike wall time, it does not grow while the thread waits for a core,
/// so benches measured with it stay meaningful on a machine busy with
/// other work (cache effects remain).
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The system's load averages (1, 5 and 15 minutes), as
/// `/proc/loadavg` gives them, to print next to figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU time (user + system, in seconds) of process `pid`, with the time
/// of its children that have ended and been waited for.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Some(ticks as f64 / clock_ticks_per_second())
}

/// The parent of process `pid`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (seconds) of process `root` and every live child of it, plus
/// the children that have ended: a PostgreSQL server's whole cost when
/// `root` is its postmaster.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let mut total = process_cpu_seconds(root).unwrap_or(0.0);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if parent_pid(pid) == Some(root) {
                total += process_cpu_seconds(pid).unwrap_or(0.0);
            }
        }
    }
    total
}

fn clock_ticks_per_second() -> f64 {
    // Linux has reported times in 1/100 s for every architecture kedai
    // runs on (USER_HZ); asking would need unsafe code.
    100.0
}

/// The median of some measurements (they are sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A number with thousands separators, for tables.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_the_size_the_targets_assume() {
        for i in 0..100 {
            let n = sample_payload(i).len();
            assert!((200..=400).contains(&n), "payload of {n} bytes");
        }
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(thread_cpu_time() > before, "{x}");
    }

    #[test]
    fn median_and_thousands() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
