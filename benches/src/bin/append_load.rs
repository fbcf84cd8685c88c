//! Load scenario: durable appends to the embedded log.
//!
//! Back of the envelope: every acknowledged append waits for one fdatasync
//! shared by the whole batch. With W writers of one event each, a batch
//! holds at most W events, so events/s <= W x fsyncs/s of the disk (about
//! 64 x 5,000-8,500 here); with 100-event appends the bound moves to the
//! write bandwidth (about 390 MiB/s / ~370 bytes per record, ~1M events/s)
//! and the writer's CPU cost per event.
//!
//! `cargo run --release -p kedai-benches --bin append_load -- --help`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kedai_benches::{append_load, measure_disk, median, thousands};
use kedai_engine::store::log::{LogOptions, LogStore};

#[derive(Parser, Debug)]
#[command(about = "Durable append throughput of the embedded log")]
struct Args {
    /// Concurrent writers, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Events per append, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batch: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory on the disk to measure (a temporary directory is made in it).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Skip measuring the disk's raw fsync rate and bandwidth.
    #[arg(long)]
    skip_disk: bool,
    /// Do not preallocate segments (to measure what preallocation brings).
    #[arg(long)]
    no_preallocate: bool,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if !args.skip_disk {
        let probe = tempfile::tempdir_in(&args.dir)?;
        let disk = measure_disk(probe.path())?;
        println!(
            "disk: {} fdatasync/s appending, {} fdatasync/s overwriting, {:.0} MiB/s sequential write",
            thousands(disk.fsyncs_per_sec_append),
            thousands(disk.fsyncs_per_sec_overwrite),
            disk.write_mib_per_sec
        );
    }
    println!(
        "| writers | events/append | events/s (median of {}) | events/fsync | MiB/s |",
        args.runs
    );
    println!("|---:|---:|---:|---:|---:|");
    for &writers in &args.writers {
        for &batch in &args.batch {
            let mut rates = Vec::new();
            let mut per_fsync = Vec::new();
            let mut mib = Vec::new();
            for _ in 0..args.runs {
                let dir = tempfile::tempdir_in(&args.dir)?;
                let options = LogOptions {
                    preallocate: !args.no_preallocate,
                    ..LogOptions::default()
                };
                let store = Arc::new(LogStore::open_with(dir.path(), options)?);
                let rate = runtime.block_on(append_load(
                    store.clone(),
                    writers,
                    batch,
                    Duration::from_secs(args.seconds),
                ));
                let stats = store.stats();
                rates.push(rate);
                per_fsync.push(stats.events as f64 / stats.batches.max(1) as f64);
                mib.push(rate * stats.bytes as f64 / stats.events.max(1) as f64 / (1 << 20) as f64);
            }
            println!(
                "| {writers} | {batch} | {} | {:.1} | {:.0} |",
                thousands(median(&mut rates)),
                median(&mut per_fsync),
                median(&mut mib)
            );
        }
    }
    Ok(())
}
