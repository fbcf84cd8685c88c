//! `kedai-replay`: the auditor's read-only tool (and `copy`, which writes
//! only to a new destination). See the crate's README for what each
//! subcommand proves.
//!
//! Exit codes: 0 when the answer is yes (intact, equal, done); 1 when it is
//! no (a defect, a kept hash not found, differences); 2 when no answer
//! could be had (a missing directory, a bad argument, a failing database).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use kedai_engine::ShopId;
use kedai_engine::domain::ids::{OrderId, Sku, WarehouseId};
use kedai_replay::copy::{CopyProgress, Place};
use kedai_replay::export::{Filter, Format};
use kedai_replay::history::Entity;
use kedai_replay::payload::Sorted;
use kedai_replay::progress::{Progress, Rate, Unit};
use kedai_replay::rebuild::{Until, parse_time};
use kedai_replay::report::Report;
use kedai_replay::source::Source;
use kedai_replay::{ReplayError, copy, diff, every_core, export, history, rebuild, verify};
use serde_json::json;

// The system allocator, not mimalloc (which `kedai serve` uses for its
// command path). A rebuild grows a few lists to hundreds of megabytes (a
// shop's orders, a busy SKU's stock history); mimalloc copies such a
// block into fresh memory each time it grows, and the kernel zeroes every
// page of it first, while the system allocator moves big blocks' pages
// with `mremap`. Since payloads are read with their texts borrowed, the
// fold allocates little else, so user time is the same with either. On
// a 10 M-event log of 4 shops on 2 threads: whole process 8.2 s against
// 7.3 s, kernel time 3.6 s against 1.4 s, peak memory 1.25 GB against
// 0.91 GB (benches/README.md).
#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

#[derive(Parser, Debug)]
#[command(
    name = "kedai-replay",
    version,
    about = "The auditor's tool: verifies, replays and exports kedai's ledger, read-only; copies it between backends"
)]
struct Cli {
    /// kedai's data directory (the log is in DIR/log); the log directory
    /// itself is accepted too.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A PostgreSQL database holding the ledger, instead of --data.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Output for scripts: JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks every record's checksum and the hash chain from the first
    /// event to the last; prints the head hash to keep.
    Verify {
        /// A head hash kept earlier: checks it is still part of the chain
        /// (history up to it was not rewritten).
        #[arg(long, value_name = "HEX")]
        from_hash: Option<String>,
        /// Threads checking segments (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Every event of one entity: position, time, actor, type, payload.
    #[command(group(ArgGroup::new("entity").required(true).args(["stream", "order", "sku", "conversation"])))]
    History {
        /// The shop's id.
        #[arg(long)]
        shop: uuid::Uuid,
        /// A stream by name (`order-<id>`, `stock-<SKU>@<warehouse>`, `wallet`...).
        #[arg(long)]
        stream: Option<String>,
        /// An order's id.
        #[arg(long)]
        order: Option<uuid::Uuid>,
        /// A SKU's stock, in every warehouse or in --warehouse.
        #[arg(long)]
        sku: Option<String>,
        #[arg(long, requires = "sku")]
        warehouse: Option<uuid::Uuid>,
        /// A conversation's id.
        #[arg(long)]
        conversation: Option<uuid::Uuid>,
    },
    /// Folds every projection up to a moment or a position and prints
    /// them as deterministic JSON.
    #[command(group(ArgGroup::new("until").required(true).args(["as_of", "position"])))]
    Rebuild {
        /// Every event recorded at or before this RFC 3339 moment.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// Every event up to and including this position.
        #[arg(long, value_name = "N")]
        position: Option<u64>,
        /// Only this shop's projections.
        #[arg(long)]
        shop: Option<uuid::Uuid>,
        /// Write the report here instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Threads folding (each a share of the shops; default: every
        /// core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
    },
    /// Compares two rebuild reports, or a report and a server's projection
    /// snapshot; exit code 0 when equal, 1 when different.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Only this shop.
        #[arg(long)]
        shop: Option<uuid::Uuid>,
    },
    /// Copies the whole ledger, record by record and byte for byte, into a
    /// new log directory or a PostgreSQL database without events (or,
    /// with --resume, after the source's first records there), then
    /// verifies the copy: its head hash must be the source's. The source
    /// is read-only; the destination is the only thing written.
    Copy {
        /// Continue a copy into a destination that holds the source's
        /// first records (a copy that stopped, or an earlier copy of a log
        /// that has grown): what it holds is checked against the source
        /// and the rest is copied after it.
        #[arg(long)]
        resume: bool,
        /// The ledger: kedai's data directory (or its log directory), or a
        /// postgres:// URL.
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// Where to copy it: a new or empty directory (the log is written
        /// to DIR/log, as kedai lays out a data directory), or the
        /// postgres:// URL of a database without events.
        #[arg(long, value_name = "DIR|URL")]
        to: String,
    },
    /// Writes events with every envelope field and the decoded payload.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only this shop's events.
        #[arg(long)]
        shop: Option<uuid::Uuid>,
        /// Events recorded at or after this RFC 3339 moment.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Events recorded before this RFC 3339 moment.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ExportFormat {
    Jsonl,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                // Said on stdout as well, for scripts; if it is closed,
                // stderr still says it.
                let _ = say(format_args!("{}\n", json!({ "error": format!("{e:#}") })));
            }
            eprintln!("kedai-replay: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if let Command::Diff { a, b, shop } = &cli.command {
        return run_diff(a, b, *shop, cli.json);
    }
    if let Command::Copy { from, to, resume } = &cli.command {
        if cli.data.is_some() || cli.database_url.is_some() {
            anyhow::bail!(
                "copy takes its two ledgers as --from and --to, not --data or --database-url"
            );
        }
        return runtime.block_on(run_copy(
            &Place::parse(from),
            &Place::parse(to),
            *resume,
            cli.json,
        ));
    }
    let source = Source::from_args(cli.data.as_deref(), cli.database_url.as_deref())?;
    runtime.block_on(async {
        match cli.command {
            Command::Verify { from_hash, threads } => {
                run_verify(&source, from_hash.as_deref(), threads, cli.json).await
            }
            Command::History {
                shop,
                stream,
                order,
                sku,
                warehouse,
                conversation,
            } => {
                let entity = if let Some(name) = stream {
                    Entity::Stream(name)
                } else if let Some(id) = order {
                    Entity::Order(OrderId(id))
                } else if let Some(sku) = sku {
                    let sku = Sku::parse(&sku).map_err(ReplayError::Invalid)?;
                    Entity::Stock(sku, warehouse.map(WarehouseId))
                } else if let Some(id) = conversation {
                    Entity::Conversation(id)
                } else {
                    anyhow::bail!("name the entity: --stream, --order, --sku or --conversation")
                };
                run_history(&source, ShopId(shop), &entity, cli.json).await
            }
            Command::Rebuild {
                as_of,
                position,
                shop,
                output,
                threads,
            } => {
                let until = match (as_of, position) {
                    (Some(t), _) => Until::Time(parse_time(&t)?),
                    (None, Some(p)) => Until::Position(p),
                    (None, None) => anyhow::bail!("give --as-of TIME or --position N"),
                };
                let threads = threads.map_or_else(every_core, usize::from);
                run_rebuild(
                    &source,
                    until,
                    threads,
                    shop.map(ShopId),
                    output.as_deref(),
                    cli.json,
                )
                .await
            }
            Command::Export {
                format,
                shop,
                from,
                to,
                output,
            } => {
                let filter = Filter {
                    shop: shop.map(ShopId),
                    from: from.as_deref().map(parse_time).transpose()?,
                    to: to.as_deref().map(parse_time).transpose()?,
                };
                let format = match format {
                    ExportFormat::Jsonl => Format::Jsonl,
                    ExportFormat::Csv => Format::Csv,
                };
                run_export(&source, filter, format, output.as_deref(), cli.json).await
            }
            Command::Diff { .. } | Command::Copy { .. } => unreachable!("handled above"),
        }
    })
}

async fn run_verify(
    source: &Source,
    from_hash: Option<&str>,
    threads: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let kept = from_hash.map(verify::parse_kept_hash).transpose()?;
    let progress = Arc::new(Progress::new("verify", 0, Unit::Bytes));
    let bar = Arc::clone(&progress);
    let mut events = 0;
    let verdict = verify::verify(source, kept, threads, move |p| {
        bar.set_total(p.bytes_total);
        bar.set(p.bytes_done);
    })
    .await
    .with_context(|| format!("verifying the {}", source.describe()))?;
    if let verify::Verdict::Intact(r) = &verdict {
        events = r.events;
    }
    let rate = Rate {
        events,
        elapsed: progress.finish(),
    };
    if json {
        say(format_args!(
            "{}\n",
            verify::render_json(&verdict, kept, rate)
        ))?;
    } else {
        say(verify::render_text(&verdict, kept, rate))?;
    }
    Ok(exit(verify::passed(&verdict, kept)))
}

async fn run_history(
    source: &Source,
    shop: ShopId,
    entity: &Entity,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = source.open().await?;
    let (streams, events) = history::history(&*store, shop, entity).await?;
    let mut out = io::stdout().lock();
    if json {
        let doc = history::render_json(shop, &streams, &events);
        serde_json::to_writer_pretty(&mut out, &Sorted(&doc))?;
        writeln!(out)?;
    } else {
        out.write_all(history::render_text(&streams, &events).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn run_rebuild(
    source: &Source,
    until: Until,
    threads: usize,
    shop: Option<ShopId>,
    output: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let store = source.open_in_order().await?;
    let opened = started.elapsed();
    let progress = Arc::new(Progress::new("rebuild", 0, Unit::Events));
    let shown = Arc::clone(&progress);
    let rebuilt = rebuild::rebuild(store, until, threads, move |done, target| {
        shown.set_total(target);
        shown.set(done);
    })
    .await?;
    let rate = Rate {
        events: rebuilt.projections.position,
        elapsed: progress.finish(),
    };
    let reporting = Instant::now();
    let report = Report::streamed(&rebuilt.projections, shop);
    match output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            report
                .write_json(BufWriter::with_capacity(1 << 20, file), threads)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => report.write_json(
            BufWriter::with_capacity(1 << 20, io::stdout().lock()),
            threads,
        )?,
    }
    let reported = reporting.elapsed();
    let summary = json!({
        "position": rebuilt.projections.position,
        "last_recorded_at": rebuilt.last_recorded_at.map(|t| t.to_string()),
        "log_end": rebuilt.log_end,
        "skipped_events": rebuilt.projections.skipped,
        "shops": report.shops.len(),
        "seconds": rate.elapsed.as_secs_f64(),
        "events_per_second": rate.per_second().round() as u64,
        "open_seconds": opened.as_secs_f64(),
        "report_seconds": reported.as_secs_f64(),
    });
    let line = format!(
        "rebuilt to position {} of {} ({} events of unknown types skipped): {rate}; \
         the log opened in {:.2} s, the report took {:.2} s",
        rebuilt.projections.position,
        rebuilt.log_end,
        rebuilt.projections.skipped,
        opened.as_secs_f64(),
        reported.as_secs_f64()
    );
    match output {
        Some(_) if json => say(format_args!("{summary}\n"))?,
        Some(path) => say(format_args!("{line}; report in {}\n", path.display()))?,
        None => eprintln!("{}", if json { summary.to_string() } else { line }),
    }
    // The process ends here: freeing millions of small allocations one by
    // one would only cost time.
    drop(report);
    std::mem::forget(rebuilt);
    Ok(ExitCode::SUCCESS)
}

fn run_diff(a: &Path, b: &Path, shop: Option<uuid::Uuid>, json: bool) -> anyhow::Result<ExitCode> {
    let mut left = diff::load(a)?;
    let mut right = diff::load(b)?;
    if let Some(shop) = shop {
        diff::only_shop(&mut left, &shop.to_string());
        diff::only_shop(&mut right, &shop.to_string());
    }
    let diffs = diff::diff(&left, &right);
    if json {
        say(format_args!("{}\n", diff::render_json(a, b, &diffs)))?;
    } else if diffs.is_empty() {
        say(format_args!(
            "equal: A {} and B {}\n",
            a.display(),
            b.display()
        ))?;
    } else {
        say(format_args!(
            "{} difference{} between A {} and B {}:\n{}",
            diffs.len(),
            if diffs.len() == 1 { "" } else { "s" },
            a.display(),
            b.display(),
            diff::render_text(&diffs)
        ))?;
    }
    Ok(exit(diffs.is_empty()))
}

async fn run_export(
    source: &Source,
    filter: Filter,
    format: Format,
    output: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = source.open().await?;
    let progress = Progress::new("export", 0, Unit::Events);
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
    };
    let summary = export::export(store, filter, format, &mut sink, |done, end| {
        progress.set_total(end);
        progress.set(done);
    })
    .await?;
    drop(sink);
    let rate = Rate {
        events: summary.read,
        elapsed: progress.finish(),
    };
    let doc = json!({
        "written": summary.written,
        "read": summary.read,
        "seconds": rate.elapsed.as_secs_f64(),
        "events_per_second": rate.per_second().round() as u64,
    });
    let line = format!("exported {} events (read {rate})", summary.written);
    let text = if json { doc.to_string() } else { line };
    // The data went to stdout: the summary goes to stderr.
    match output {
        Some(_) => say(format_args!("{text}\n"))?,
        None => eprintln!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_copy(from: &Place, to: &Place, resume: bool, json: bool) -> anyhow::Result<ExitCode> {
    let copying = Arc::new(Progress::new("copy", 0, Unit::Events));
    let verifying = Arc::new(Progress::new("verify", 0, Unit::Bytes));
    let (c, v) = (Arc::clone(&copying), Arc::clone(&verifying));
    let copied = copy::copy(from, to, resume, move |p| match p {
        CopyProgress::Copying { done, total } => {
            c.set_total(total);
            c.set(done);
        }
        CopyProgress::Verifying(p) => {
            c.finish();
            v.set_total(p.bytes_total);
            v.set(p.bytes_done);
        }
    })
    .await
    .context("copying the ledger")?;
    copying.finish();
    verifying.finish();
    let rate = Rate {
        events: copied.events,
        elapsed: copied.copy_time,
    };
    if json {
        say(format_args!("{}\n", copy::render_json(&copied, rate)))?;
    } else {
        say(copy::render_text(&copied, rate))?;
    }
    Ok(exit(copied.passed()))
}

/// Writes `text` to stdout. A reader that went away (`| head`) is an
/// error `main` ends on quietly, not a panic as with `print!`.
fn say(text: impl std::fmt::Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()
}

/// Whether the reader of our output went away (`| head`).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<ReplayError>()
                .is_some_and(ReplayError::is_broken_pipe)
    })
}

fn exit(yes: bool) -> ExitCode {
    if yes {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
