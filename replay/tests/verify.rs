//! `kedai-replay verify` on real log files, through the binary: intact
//! data passes with its count, last position and head hash; a flipped
//! byte, a deleted record, two swapped records and a truncated sealed
//! segment are each pinpointed (position, segment file, offset), while
//! half a record at the end (a writer mid-write) is only a note; the
//! earliest of two defects is the one reported, whatever order the
//! parallel checks finish in; a kept head hash is found after more events
//! are appended, a foreign one is not; and verification writes nothing.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use kedai_engine::Timestamp;
use kedai_engine::store::log::verify::{hash_to_hex, verify};

fn verify_json(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["--data", dir.to_str().unwrap(), "verify"];
    args.extend_from_slice(extra);
    replay_json(&args)
}

#[tokio::test]
async fn intact_data_passes_with_its_head_hash() {
    let (data, log, last) = traded_log(40).await;
    wait_for_indexes(&log);
    assert!(segments(&log).len() >= 4, "small segments: several sealed");
    let (code, v) = verify_json(data.path(), &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["intact"], true);
    assert_eq!(v["passed"], true);
    assert_eq!(v["events"], last);
    assert_eq!(v["last_position"], last);
    assert_eq!(v["segments"], segments(&log).len());
    let engine = verify(&log, None, |_| {}).unwrap();
    assert_eq!(v["head_hash"], hash_to_hex(&engine.last_hash));
    assert!(v["events_per_second"].as_u64().is_some());
    for threads in ["1", "3"] {
        let (code, w) = verify_json(data.path(), &["--threads", threads]);
        assert_eq!(code, 0);
        assert_eq!(
            (&w["events"], &w["head_hash"]),
            (&v["events"], &v["head_hash"])
        );
    }

    // The text form, and the log directory given directly.
    let out = replay(&["--data", log.to_str().unwrap(), "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("intact: "), "{text}");
    assert!(text.contains(&format!("last position: {last}")), "{text}");
    assert!(text.contains(&format!("head hash: {}", hash_to_hex(&engine.last_hash))));
    assert!(text.contains("events/s"), "{text}");
}

/// Runs verify on a damaged copy and checks the defect it names.
fn expect_defect(dir: &Path, position: u64, segment: &Path, offset: usize, reason_part: &str) {
    let (code, v) = verify_json(dir, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["intact"], false, "{v}");
    let d = &v["defect"];
    assert_eq!(d["position"], position, "{v}");
    assert_eq!(d["location"], segment.display().to_string(), "{v}");
    assert_eq!(d["offset"], offset, "{v}");
    assert!(
        d["reason"].as_str().unwrap().contains(reason_part),
        "{reason_part:?} not in {v}"
    );
    let out = replay(&["--data", dir.to_str().unwrap(), "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "DEFECT at position {position}: segment {}, offset {offset}:",
            segment.display()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn damage_is_pinpointed() {
    let (_data, log, _) = traded_log(40).await;
    wait_for_indexes(&log);
    let segs = segments(&log);
    assert!(segs.len() >= 4);
    let name = segs[1].file_name().unwrap().to_owned();
    let recs = records(&segs[1]);
    assert!(recs.len() >= 4, "{recs:?}");

    // A flipped byte in the middle of a record's body.
    let (_c, dir) = copy_log(&log);
    let target = dir.join(&name);
    let mut bytes = fs::read(&target).unwrap();
    let (offset, end, position) = recs[2];
    bytes[(offset + end) / 2] ^= 0x01;
    fs::write(&target, &bytes).unwrap();
    expect_defect(&dir, position, &target, offset, "checksum mismatch");

    // A deleted record: the next one sits where it should be.
    let (_c, dir) = copy_log(&log);
    let target = dir.join(&name);
    let mut bytes = fs::read(&target).unwrap();
    let (offset, end, position) = recs[1];
    bytes.drain(offset..end);
    fs::write(&target, &bytes).unwrap();
    expect_defect(
        &dir,
        position,
        &target,
        offset,
        &format!("holds position {}, expected {position}", position + 1),
    );

    // Two records swapped.
    let (_c, dir) = copy_log(&log);
    let target = dir.join(&name);
    let mut bytes = fs::read(&target).unwrap();
    let (a_off, a_end, position) = recs[1];
    let (_, b_end, _) = recs[2];
    let mut swapped = bytes[a_end..b_end].to_vec();
    swapped.extend_from_slice(&bytes[a_off..a_end]);
    bytes.splice(a_off..b_end, swapped);
    fs::write(&target, &bytes).unwrap();
    expect_defect(
        &dir,
        position,
        &target,
        a_off,
        &format!("holds position {}, expected {position}", position + 1),
    );

    // A sealed segment cut in the middle of its last record.
    let (_c, dir) = copy_log(&log);
    let target = dir.join(&name);
    let bytes = fs::read(&target).unwrap();
    let (offset, end, position) = *recs.last().unwrap();
    fs::write(&target, &bytes[..end - 5]).unwrap();
    expect_defect(&dir, position, &target, offset, "runs past the end");

    // A sealed segment cut at a record boundary: the next segment no
    // longer follows it.
    let (_c, dir) = copy_log(&log);
    let target = dir.join(&name);
    fs::write(&target, &bytes[..offset]).unwrap();
    let next = dir.join(segs[2].file_name().unwrap());
    expect_defect(&dir, position, &next, 0, "a segment is missing");
}

#[tokio::test]
async fn an_unfinished_tail_is_a_note_not_a_defect() {
    let (_data, log, last) = traded_log(10).await;
    let (_c, dir) = copy_log(&log);
    let target = dir.join(segments(&log).last().unwrap().file_name().unwrap());
    let recs = records(&target);
    let (offset, end, _) = *recs.last().unwrap();
    // Half of a record written after the last one: a writer mid-write.
    let mut bytes = fs::read(&target).unwrap();
    let partial = bytes[offset..offset + (end - offset) / 2].to_vec();
    bytes.truncate(end);
    bytes.extend_from_slice(&partial);
    fs::write(&target, &bytes).unwrap();
    let (code, v) = verify_json(&dir, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["last_position"], last);
    assert_eq!(v["unfinished_tail_bytes"], partial.len());
    let out = replay(&["--data", dir.to_str().unwrap(), "verify"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("note: "), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("unfinished write"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn the_earliest_of_several_defects_is_reported() {
    let (_data, log, _) = traded_log(40).await;
    let segs = segments(&log);
    assert!(segs.len() >= 5);
    let (_c, dir) = copy_log(&log);
    // Damage far in (checked first by one thread or another), then near
    // the start.
    for (i, k) in [(segs.len() - 2, 1), (1, 2)] {
        let target = dir.join(segs[i].file_name().unwrap());
        let recs = records(&target);
        let mut bytes = fs::read(&target).unwrap();
        bytes[recs[k].1 - 1] ^= 0x80;
        fs::write(&target, &bytes).unwrap();
    }
    let target = dir.join(segs[1].file_name().unwrap());
    let (offset, _, position) = records(&log.join(segs[1].file_name().unwrap()))[2];
    for threads in ["1", "2", "8"] {
        let (code, v) = verify_json(&dir, &["--threads", threads]);
        assert_eq!(code, 1);
        assert_eq!(v["defect"]["position"], position, "{threads} threads: {v}");
        assert_eq!(v["defect"]["offset"], offset);
        assert_eq!(v["defect"]["location"], target.display().to_string());
    }
}

#[tokio::test]
async fn a_kept_hash_is_found_later_and_a_foreign_one_is_not() {
    let (data, log) = data_dir();
    let d = data.path().to_str().unwrap().to_owned();
    let (store, world) = world_on_log(&log).await;
    let end = trade(&world, 1, 12, Timestamp(OPENING.0 + HOUR)).await;
    let (code, first) = verify_json(data.path(), &[]);
    assert_eq!(code, 0, "{first}");
    let kept = first["head_hash"].as_str().unwrap().to_owned();
    let kept_at = first["last_position"].as_u64().unwrap();

    // More history; the kept hash is still in the chain.
    trade(&world, 100, 12, end).await;
    let (code, later) = verify_json(data.path(), &["--from-hash", &kept]);
    assert_eq!(code, 0, "{later}");
    assert!(later["last_position"].as_u64().unwrap() > kept_at);
    assert_eq!(later["kept_hash"]["found"], true);
    assert_eq!(later["kept_hash"]["position"], kept_at);
    let out = replay(&["--data", &d, "verify", "--from-hash", &kept]);
    assert!(
        stdout(&out).contains(&format!("it is the hash of position {kept_at}")),
        "{}",
        stdout(&out)
    );
    // The genesis hash is the chain's start.
    let genesis = "0".repeat(64);
    let (code, v) = verify_json(data.path(), &["--from-hash", &genesis]);
    assert_eq!(
        (code, &v["kept_hash"]["position"]),
        (0, &serde_json::json!(0))
    );

    // A hash from elsewhere.
    let foreign = "ab".repeat(32);
    let (code, v) = verify_json(data.path(), &["--from-hash", &foreign]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["intact"], true, "the chain itself is sound");
    assert_eq!(v["kept_hash"]["found"], false);
    let out = replay(&["--data", &d, "verify", "--from-hash", &foreign]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("NOT FOUND"), "{}", stdout(&out));

    // Not a hash at all: no answer.
    let out = replay(&["--data", &d, "verify", "--from-hash", "xyz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a hash"), "{}", stderr(&out));
    drop(world);
    drop(store);
}

#[tokio::test]
async fn verification_and_replay_write_nothing() {
    let (data, log, last) = traded_log(10).await;
    wait_for_indexes(&log);
    fs::remove_file(log.join("LOCK")).unwrap();
    let listing = |dir: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = listing(&log);
    let d = data.path().to_str().unwrap();
    let position = last.to_string();
    for args in [
        vec!["--data", d, "verify"],
        vec!["--data", d, "rebuild", "--position", &position],
        vec!["--data", d, "export", "--format", "jsonl"],
        vec![
            "--data",
            d,
            "history",
            "--shop",
            "00000000-0000-0000-0000-000000000005",
            "--stream",
            "wallet",
        ],
    ] {
        let out = replay(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(listing(&log), before, "no lock file, no index, no change");
}
