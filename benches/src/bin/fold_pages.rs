//! Load scenario: the fold alone, on a real log. The log's records are
//! read into pages first (as `kedai-replay rebuild` reads them), then
//! folded from memory by `ParallelFold`, several times in one process:
//! no reading overlaps the fold, and the allocator is warm after the
//! first run (the first run of each process is reported apart, since it
//! pays for fresh memory). On this machine, whose speed drifts between
//! series, this spreads less than whole rebuilds do, so it is how two
//! builds' folds are compared: run both binaries alternately, several
//! rounds, and compare the medians of the warm runs.
//!
//! `cargo run --release -p kedai-benches --bin fold_pages -- --data DIR --position N --runs 4`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use kedai_benches::{median, thousands};
use kedai_engine::store::import::{RecordPage, Verbatim};
use kedai_engine::store::log::LogStore;
use kedai_projections::fold::{FOLD_PAGE_RECORDS, ParallelFold};

#[derive(Parser, Debug)]
#[command(about = "The fold of a log's records, read into memory first")]
struct Args {
    /// The log's directory (a data directory's `log`).
    #[arg(long)]
    data: PathBuf,
    /// Fold up to here (the log's end if past it).
    #[arg(long)]
    position: u64,
    /// Folds to time, each from a fresh copy of the pages.
    #[arg(long, default_value_t = 4)]
    runs: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log's records up to `position`, in pages as a rebuild reads them.
async fn pages(store: &Arc<dyn Verbatim>, position: u64) -> anyhow::Result<Vec<RecordPage>> {
    let mut pages = Vec::new();
    let mut read = 0;
    while read < position {
        let want = ((position - read) as usize).min(FOLD_PAGE_RECORDS);
        let page = store.read_page(read, want, RecordPage::default()).await?;
        let Some(last) = page.last_position() else {
            break;
        };
        read = last;
        pages.push(page);
    }
    Ok(pages)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let store: Arc<dyn Verbatim> = Arc::new(LogStore::open_in_order(&args.data)?);
    let mut warm = Vec::new();
    for run in 0..args.runs {
        let pages = runtime.block_on(pages(&store, args.position))?;
        let events = pages
            .last()
            .and_then(RecordPage::last_position)
            .unwrap_or(0);
        let started = Instant::now();
        let mut fold = ParallelFold::start(args.threads, None);
        for page in pages {
            fold.push(page);
        }
        let folded = fold.finish()?;
        let seconds = started.elapsed().as_secs_f64();
        drop(folded);
        println!(
            "run {}: {seconds:.3} s, {} events/s{}",
            run + 1,
            thousands(events as f64 / seconds),
            if run == 0 {
                " (first: fresh memory)"
            } else {
                ""
            }
        );
        if run > 0 {
            warm.push(seconds);
        }
    }
    if !warm.is_empty() {
        println!("median of the warm runs: {:.3} s", median(&mut warm));
    }
    Ok(())
}
