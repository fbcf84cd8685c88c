//! `verify`: every record's checksum, every position, and the hash chain
//! from the first event to the last, by the engine's own verifiers (the
//! embedded log's, on all cores, and PostgreSQL's), and whether a hash the
//! auditor kept earlier is still part of the chain.
//!
//! A defect is an answer, not an error: [`Verdict::Defect`] names the
//! first bad position and what is wrong there (with the segment file and
//! offset for the log). Bytes after the last whole record of the log (a
//! writer mid-write, or a crash) are an unfinished tail: a note, not a
//! defect, since they were never acknowledged.

use std::path::PathBuf;

use kedai_engine::store::log::format::Hash;
use kedai_engine::store::log::verify::{
    VerifyProgress, VerifyReport, hash_to_hex, parse_hash, verify_with_threads,
};
use kedai_engine::store::postgres::CORRUPT_LOCATION;
use kedai_engine::{Position, StoreError};
use serde_json::{Value, json};

use crate::ReplayError;
use crate::progress::{Rate, thousands};
use crate::source::Source;

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Intact(VerifyReport),
    /// The first defect, at the earliest position.
    Defect(Defect),
}

/// A defect in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// The first bad position (the one expected where the defect is).
    pub position: Option<Position>,
    /// The segment file (log) or table (PostgreSQL).
    pub location: PathBuf,
    /// Offset in the segment file (log only).
    pub offset: Option<u64>,
    pub reason: String,
}

/// Parses a kept hash (64 hexadecimal digits).
pub fn parse_kept_hash(text: &str) -> Result<Hash, ReplayError> {
    parse_hash(text).ok_or_else(|| {
        ReplayError::Invalid(format!(
            "--from-hash {text:?} is not a hash: give the 64 hexadecimal digits `verify` printed as the head hash"
        ))
    })
}

/// Verifies the ledger. `threads` (log only) defaults to every core.
pub async fn verify(
    source: &Source,
    kept: Option<Hash>,
    threads: Option<usize>,
    progress: impl FnMut(VerifyProgress) + Send + 'static,
) -> Result<Verdict, ReplayError> {
    let checked = match source {
        Source::Log { dir } => {
            let dir = dir.clone();
            let threads = threads.unwrap_or_else(crate::every_core);
            tokio::task::spawn_blocking(move || verify_with_threads(&dir, kept, threads, progress))
                .await
                .map_err(|e| ReplayError::Invalid(format!("verification stopped: {e}")))?
        }
        Source::Postgres { url } => {
            kedai_engine::store::postgres::verify::verify(url, kept, progress).await
        }
    };
    match checked {
        Ok(report) => Ok(Verdict::Intact(report)),
        Err(StoreError::Corrupt {
            segment,
            offset,
            position,
            reason,
        }) => {
            let in_table = segment.as_os_str() == CORRUPT_LOCATION;
            Ok(Verdict::Defect(Defect {
                position,
                offset: (!in_table).then_some(offset),
                location: segment,
                reason,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the answer is "all good": intact, and the kept hash (if one was
/// given) found.
pub fn passed(verdict: &Verdict, kept: Option<Hash>) -> bool {
    match verdict {
        Verdict::Intact(report) => kept.is_none() || report.found_hash_at.is_some(),
        Verdict::Defect(_) => false,
    }
}

/// The verdict as text.
pub fn render_text(verdict: &Verdict, kept: Option<Hash>, rate: Rate) -> String {
    let mut out = String::new();
    match verdict {
        Verdict::Defect(d) => {
            let at = d
                .position
                .map_or_else(|| "the start".to_owned(), |p| format!("position {p}"));
            let place = match d.offset {
                Some(offset) => format!("segment {}, offset {offset}", d.location.display()),
                None => d.location.display().to_string(),
            };
            out.push_str(&format!("DEFECT at {at}: {place}: {}\n", d.reason));
            out.push_str("the ledger fails verification: history at and after this position cannot be trusted\n");
        }
        Verdict::Intact(r) => {
            out.push_str(&format!(
                "intact: {} events, positions 1 to {}, hash chain and every checksum hold ({} segments, {} bytes of records)\n",
                thousands(r.events),
                thousands(r.last_position),
                r.segments,
                thousands(r.bytes)
            ));
            out.push_str(&format!("last position: {}\n", r.last_position));
            out.push_str(&format!("head hash: {}\n", hash_to_hex(&r.last_hash)));
            if r.unfinished_tail_bytes > 0 {
                out.push_str(&format!(
                    "note: {} bytes after the last whole record are an unfinished write (a writer still writing, or a crash); they were never acknowledged and are not history\n",
                    thousands(r.unfinished_tail_bytes)
                ));
            }
            if let Some(kept) = kept {
                match r.found_hash_at {
                    Some(p) => out.push_str(&format!(
                        "kept hash {} found: it is the hash of position {p}; history up to there is unchanged\n",
                        hash_to_hex(&kept)
                    )),
                    None => out.push_str(&format!(
                        "NOT FOUND: kept hash {} is not in the chain: history was rewritten since it was taken, or it belongs to another ledger\n",
                        hash_to_hex(&kept)
                    )),
                }
            }
        }
    }
    out.push_str(&format!("checked {rate}\n"));
    out
}

/// The verdict as JSON.
pub fn render_json(verdict: &Verdict, kept: Option<Hash>, rate: Rate) -> Value {
    let mut out = match verdict {
        Verdict::Intact(r) => json!({
            "intact": true,
            "events": r.events,
            "segments": r.segments,
            "bytes": r.bytes,
            "last_position": r.last_position,
            "head_hash": hash_to_hex(&r.last_hash),
            "unfinished_tail_bytes": r.unfinished_tail_bytes,
        }),
        Verdict::Defect(d) => json!({
            "intact": false,
            "defect": {
                "position": d.position,
                "location": d.location.display().to_string(),
                "offset": d.offset,
                "reason": d.reason,
            },
        }),
    };
    if let Some(kept) = kept {
        let found = match verdict {
            Verdict::Intact(r) => r.found_hash_at,
            Verdict::Defect(_) => None,
        };
        out["kept_hash"] = json!({
            "hash": hash_to_hex(&kept),
            "found": found.is_some(),
            "position": found,
        });
    }
    out["passed"] = json!(passed(verdict, kept));
    out["seconds"] = json!(rate.elapsed.as_secs_f64());
    out["events_per_second"] = json!(rate.per_second().round() as u64);
    out
}
