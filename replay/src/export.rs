//! `export`: events as JSON Lines or CSV, for spreadsheets and other tools,
//! optionally of one shop and between two moments.
//!
//! Every row carries the whole envelope (position, shop, stream, version,
//! event id, recorded_at, actor role and id, correlation and causation ids,
//! type, schema version, payload size) and the payload: decoded as a JSON
//! object in JSON Lines, and as that object's JSON text in a CSV column.
//! `--from` is inclusive and `--to` exclusive; as `recorded_at` never
//! decreases along the log, the first event at or after `--from` is found
//! by bisection, and reading stops at the first event at or after `--to`.

use std::io::Write;
use std::sync::Arc;

use kedai_engine::{EventStore, Position, RecordedEvent, ShopId, Timestamp};

use crate::ReplayError;
use crate::pages::Pages;
use crate::payload::{ENVELOPE_COLUMNS, Sorted, envelope_texts, event_json, payload_json};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Which events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub shop: Option<ShopId>,
    /// Recorded at or after.
    pub from: Option<Timestamp>,
    /// Recorded before.
    pub to: Option<Timestamp>,
}

impl Filter {
    fn admits(&self, e: &RecordedEvent) -> bool {
        self.shop.is_none_or(|s| e.stream.shop == s)
    }
}

/// What an export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Events written.
    pub written: u64,
    /// Events read (those of other shops included).
    pub read: u64,
}

/// Where rows go.
enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write),
}

/// Writes the events `filter` admits to `out`. `progress` gets the
/// position reached and the last position, after each page.
pub async fn export(
    store: Arc<dyn EventStore>,
    filter: Filter,
    format: Format,
    out: &mut dyn Write,
    mut progress: impl FnMut(Position, Position),
) -> Result<ExportSummary, ReplayError> {
    let end = store.last_position().await?;
    let after = match filter.from {
        Some(t) => first_at_or_after(&*store, end, t).await? - 1,
        None => 0,
    };
    let io = |e| ReplayError::io("writing the export", e);
    let mut sink = match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(ENVELOPE_COLUMNS.iter().copied().chain(["payload"]))?;
            Sink::Csv(Box::new(w))
        }
        Format::Jsonl => Sink::Jsonl(out),
    };
    let mut summary = ExportSummary {
        written: 0,
        read: 0,
    };
    let mut pages = Pages::spawn(store, after, end);
    'pages: while let Some(page) = pages.next().await {
        let page = page?;
        for e in &page {
            if filter.to.is_some_and(|to| e.recorded_at >= to) {
                break 'pages;
            }
            summary.read += 1;
            if !filter.admits(e) {
                continue;
            }
            match &mut sink {
                Sink::Csv(w) => {
                    let payload = payload_json(&e.event_type, &e.payload);
                    let payload = serde_json::to_string(&Sorted(&payload))?;
                    w.write_record(
                        envelope_texts(e)
                            .iter()
                            .map(String::as_str)
                            .chain([payload.as_str()]),
                    )?;
                }
                Sink::Jsonl(out) => {
                    let line = event_json(e);
                    serde_json::to_writer(&mut **out, &Sorted(&line))?;
                    out.write_all(b"\n").map_err(io)?;
                }
            }
            summary.written += 1;
        }
        if let Some(last) = page.last() {
            progress(last.position, end);
        }
    }
    match sink {
        Sink::Csv(mut w) => w.flush().map_err(io)?,
        Sink::Jsonl(out) => out.flush().map_err(io)?,
    }
    Ok(summary)
}

/// The first position whose event was recorded at or after `t` (`end + 1`
/// if none was), by bisection over positions `1..=end`.
pub async fn first_at_or_after(
    store: &dyn EventStore,
    end: Position,
    t: Timestamp,
) -> Result<Position, ReplayError> {
    let (mut lo, mut hi) = (1, end + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = store
            .read_all(mid - 1, 1)
            .await?
            .first()
            .map(|e| e.recorded_at)
            .ok_or_else(|| ReplayError::Invalid(format!("position {mid} could not be read")))?;
        if at >= t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}
