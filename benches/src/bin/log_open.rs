//! Load scenario: a big embedded log (10 million events by default):
//! how long it takes to write, to open for writing (sidecar indexes of
//! sealed segments, checksums of every record, a scan of the last
//! segment), to open read-only, to read back whole, and to verify (every
//! checksum and the hash chain).
//!
//! Back of the envelope: 10M records of ~370 bytes is ~3.7 GB; reading it
//! from the page cache and checking CRC32C costs ~1 s, rebuilding the
//! in-memory indexes (10M positions and event ids) ~1-2 s; hashing 3.7 GB
//! with BLAKE3 on one core ~3-4 s.
//!
//! `cargo run --release -p kedai-benches --bin log_open -- --events 10000000`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kedai_benches::{append_load, thousands};
use kedai_engine::EventStore;
use kedai_engine::store::log::LogStore;
use kedai_engine::store::log::verify::verify;

#[derive(Parser, Debug)]
#[command(about = "Opening, reading and verifying a big embedded log")]
struct Args {
    /// Events to write (skipped if the directory already holds a log).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Where to keep the log (reused between runs); a temporary directory
    /// under the current one if not given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Opens to time (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir_in(".")?;
            temp.path().to_owned()
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let existing = LogStore::open_read_only(&dir).ok();
    let have = match existing {
        Some(s) => runtime.block_on(s.last_position())?,
        None => 0,
    };
    if have < args.events {
        let store = Arc::new(LogStore::open(&dir)?);
        let start = Instant::now();
        runtime.block_on(async {
            while store.stats().events + have < args.events {
                append_load(store.clone(), 64, 100, Duration::from_millis(500)).await;
            }
        });
        let stats = store.stats();
        println!(
            "wrote {} events ({:.2} GiB) in {:.1} s",
            thousands(stats.events as f64),
            stats.bytes as f64 / (1u64 << 30) as f64,
            start.elapsed().as_secs_f64()
        );
    }
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let start = Instant::now();
        let store = LogStore::open(&dir)?;
        times.push(start.elapsed().as_secs_f64());
        drop(store);
    }
    let events = runtime.block_on(LogStore::open_read_only(&dir)?.last_position())?;
    println!("events: {}", thousands(events as f64));
    println!(
        "open for writing: {:.2} s (median of {})",
        kedai_benches::median(&mut times),
        args.runs
    );
    let start = Instant::now();
    let reader = LogStore::open_read_only(&dir)?;
    println!("open read-only: {:.2} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let mut after = 0;
    runtime.block_on(async {
        loop {
            let batch = reader.read_all(after, 10_000).await?;
            let Some(last) = batch.last() else { break };
            after = last.position;
        }
        anyhow::Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read all: {:.2} s, {} events/s",
        secs,
        thousands(after as f64 / secs)
    );
    let start = Instant::now();
    let report = verify(&dir, None, |_| {})?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "verify: {:.2} s, {} events/s, {:.0} MiB/s",
        secs,
        thousands(report.events as f64 / secs),
        report.bytes as f64 / secs / (1 << 20) as f64
    );
    Ok(())
}
