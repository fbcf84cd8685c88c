//! Fault tests of the `log` backend: torn tails at every byte, flipped bits,
//! truncated and missing segments, failing writes and syncs, the writer
//! lock, and what survives a reopen.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kedai_engine::store::conformance::read_everything;
use kedai_engine::store::import::Verbatim;
use kedai_engine::store::log::format::{self, Frame, SEGMENT_HEADER_LEN};
use kedai_engine::store::log::verify::verify;
use kedai_engine::store::log::{FaultInjector, LogOptions, LogStore, WriteFault};
use kedai_engine::{
    Actor, AppendRequest, AppendStatus, EventStore, ExpectedVersion, NewEvent, Role, ShopId,
    StoreError, StreamId, Timestamp,
};
use uuid::Uuid;

fn stream(name: &str) -> StreamId {
    StreamId::new(ShopId(Uuid::from_u128(9)), name)
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "StockReceived".into(),
        schema_version: 1,
        actor: Actor::new(Role::Staff, "budi"),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        payload: format!("{{\"sku\":\"KAOS-{i}\",\"quantity\":{i}}}").into_bytes(),
    }
}

fn request(i: usize) -> AppendRequest {
    AppendRequest::single(
        stream(&format!("stock-{}", i % 3)),
        ExpectedVersion::Any,
        Timestamp(1_760_000_000_000_000 + i as i64),
        vec![event(i)],
    )
}

async fn append_n(store: &LogStore, from: usize, n: usize) {
    for i in from..from + n {
        store.append(request(i)).await.expect("append");
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Start offsets of every record in a segment file.
fn record_offsets(path: &Path) -> Vec<usize> {
    let data = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Frame::Record { next, .. } = format::read_frame(&data, at) {
        offsets.push(at);
        at = next;
    }
    offsets
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "LOCK" {
            fs::copy(entry.path(), to.path().join(name)).unwrap();
        }
    }
    to
}

/// One-MiB segments: preallocating them costs little per test.
fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 1 << 20,
        ..LogOptions::default()
    }
}

fn open(dir: &Path) -> Result<LogStore, StoreError> {
    LogStore::open_with(dir, options())
}

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes_max: 2048,
        ..LogOptions::default()
    }
}

fn expect_corrupt(result: Result<LogStore, StoreError>, segment: &Path, position: u64) {
    match result {
        Err(StoreError::Corrupt {
            segment: s,
            position: p,
            ..
        }) => {
            assert_eq!(s, segment, "the error names the damaged segment");
            assert_eq!(p, Some(position), "the error names the position");
        }
        Err(other) => panic!("expected corruption at position {position}, got {other}"),
        Ok(_) => panic!("a damaged log opened without complaint"),
    }
}

#[tokio::test]
async fn reopen_restores_everything_and_idempotency_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let first = request(0);
    {
        let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
        store.append(first.clone()).await.unwrap();
        append_n(&store, 1, 60).await;
        assert!(store.segment_count() > 3, "small segments roll");
    }
    let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
    let all = read_everything(&store).await;
    assert_eq!(all.len(), 61);
    assert_eq!(store.stream_version(&stream("stock-0")).await.unwrap(), 21);
    let retry = store.append(first).await.unwrap();
    assert_eq!(
        retry.status,
        AppendStatus::AlreadyRecorded,
        "idempotency survives a restart"
    );
    assert_eq!((retry.first_position, retry.last_position), (1, 1));
    let late = AppendRequest::single(
        stream("late"),
        ExpectedVersion::NoStream,
        Timestamp(0),
        vec![event(1)],
    );
    let outcome = store.append(late).await.unwrap();
    assert_eq!(outcome.first_position, 62);
    let last = store.read_all(61, 1).await.unwrap();
    assert_eq!(
        last[0].recorded_at, all[60].recorded_at,
        "recorded_at does not go back across a restart"
    );
    drop(store);
    let report = verify(dir.path(), None, |_| {}).unwrap();
    assert_eq!((report.events, report.last_position), (62, 62));
    assert_eq!(report.unfinished_tail_bytes, 0);
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_every_byte_of_the_last_record() {
    let template = tempfile::tempdir().unwrap();
    {
        let store = open(template.path()).unwrap();
        append_n(&store, 0, 5).await;
    }
    let seg = segments(template.path()).remove(0);
    let whole = fs::read(&seg).unwrap();
    let last_start = *record_offsets(&seg).last().unwrap();
    let Frame::Record { next: last_end, .. } = format::read_frame(&whole, last_start) else {
        panic!("no last record");
    };
    for cut in last_start..last_end {
        for zero_fill in [false, true] {
            let copy = copy_dir(template.path());
            let target = copy.path().join(seg.file_name().unwrap());
            let mut bytes = whole[..cut].to_vec();
            if zero_fill {
                bytes.resize(whole.len(), 0);
            }
            fs::write(&target, &bytes).unwrap();

            let reader = LogStore::open_read_only(copy.path()).unwrap();
            assert_eq!(reader.last_position().await.unwrap(), 4, "cut {cut}");
            // Read in order, the tail is taken without following the
            // chain, yet it ends at the same record, hash and time.
            let in_order = LogStore::open_in_order(copy.path()).unwrap();
            assert_eq!(
                in_order.chain_end().await.unwrap(),
                reader.chain_end().await.unwrap(),
                "cut {cut}"
            );
            assert_eq!(
                read_everything(&in_order).await,
                read_everything(&reader).await
            );
            drop((reader, in_order));
            assert_eq!(
                fs::read(&target).unwrap(),
                bytes,
                "read-only open changes nothing"
            );

            let store = open(copy.path()).unwrap();
            assert_eq!(
                store.last_position().await.unwrap(),
                4,
                "cut {cut}, zero fill {zero_fill}"
            );
            append_n(&store, 100, 1).await;
            drop(store);
            let report = verify(copy.path(), None, |_| {}).unwrap();
            assert_eq!(report.last_position, 5);
            assert_eq!(report.unfinished_tail_bytes, 0);
        }
    }
}

#[tokio::test]
async fn a_flipped_bit_in_an_old_record_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).unwrap();
        append_n(&store, 0, 10).await;
    }
    let seg = segments(dir.path()).remove(0);
    let third = record_offsets(&seg)[2];
    for byte in [third, third + 5, third + 20, third + 60] {
        let copy = copy_dir(dir.path());
        let target = copy.path().join(seg.file_name().unwrap());
        let mut bytes = fs::read(&target).unwrap();
        bytes[byte] ^= 0x04;
        fs::write(&target, &bytes).unwrap();
        expect_corrupt(open(copy.path()), &target, 3);
        expect_corrupt(LogStore::open_read_only(copy.path()), &target, 3);
        let verified = verify(copy.path(), None, |_| {});
        assert!(
            matches!(
                verified,
                Err(StoreError::Corrupt {
                    position: Some(3),
                    ..
                })
            ),
            "{verified:?}"
        );
        assert_eq!(
            fs::read(&target).unwrap(),
            bytes,
            "a failed open repairs nothing"
        );
    }
}

/// Waits until every sealed segment has its sidecar index.
fn wait_for_indexes(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let segs = segments(dir);
    let sealed = &segs[..segs.len() - 1];
    while !sealed.iter().all(|s| s.with_extension("idx").exists()) {
        assert!(
            Instant::now() < deadline,
            "segment indexes were not written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_found_on_open_and_on_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
        append_n(&store, 0, 60).await;
    }
    wait_for_indexes(dir.path());
    let segs = segments(dir.path());
    let victim = &segs[1];
    let first: u64 =
        format::parse_segment_file_name(victim.file_name().unwrap().to_str().unwrap()).unwrap();
    let offsets = record_offsets(victim);
    let mut bytes = fs::read(victim).unwrap();
    bytes[offsets[1] + 30] ^= 0x80;
    fs::write(victim, &bytes).unwrap();

    expect_corrupt(
        LogStore::open_with(dir.path(), small_segments()),
        victim,
        first + 1,
    );
    // A read-only open does not check sealed segments up front, but reading
    // the damaged record does.
    let reader = LogStore::open_read_only(dir.path()).unwrap();
    let read = reader.read_all(first, 10).await;
    assert!(
        matches!(&read, Err(StoreError::Corrupt { position: Some(p), .. }) if *p == first + 1),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_truncated_or_missing_sealed_segment_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
        append_n(&store, 0, 60).await;
    }
    wait_for_indexes(dir.path());
    let segs = segments(dir.path());
    let truncated = copy_dir(dir.path());
    let victim = truncated.path().join(segs[1].file_name().unwrap());
    let len = fs::metadata(&victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let opened = LogStore::open_with(truncated.path(), small_segments());
    assert!(
        matches!(&opened, Err(StoreError::Corrupt { segment, .. }) if *segment == victim),
        "{opened:?}"
    );

    let missing = copy_dir(dir.path());
    fs::remove_file(missing.path().join(segs[1].file_name().unwrap())).unwrap();
    let opened = LogStore::open_with(missing.path(), small_segments());
    assert!(
        matches!(&opened, Err(StoreError::Corrupt { reason, .. }) if reason.contains("expected")),
        "{opened:?}"
    );
    assert!(verify(missing.path(), None, |_| {}).is_err());
}

#[tokio::test]
async fn lost_sidecar_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
        append_n(&store, 0, 40).await;
    }
    wait_for_indexes(dir.path());
    let before = {
        let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
        read_everything(&store).await
    };
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            fs::remove_file(&path).unwrap();
        } else if path.extension().is_some_and(|e| e == "seg") {
            // A damaged index is ignored, not trusted.
            fs::write(path.with_extension("idx"), b"KEDAIIDX garbage").unwrap();
        }
    }
    let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
    assert_eq!(read_everything(&store).await, before);
    let segs = segments(dir.path());
    assert!(
        segs[..segs.len() - 1]
            .iter()
            .all(|s| fs::read(s.with_extension("idx")).unwrap().len() > 16)
    );
}

#[tokio::test]
async fn a_second_writer_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).unwrap();
    append_n(&first, 0, 2).await;
    let second = open(dir.path());
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{second:?}"
    );
    let reader = LogStore::open_read_only(dir.path()).expect("readers take no lock");
    assert_eq!(reader.last_position().await.unwrap(), 2);
    assert!(matches!(
        reader.append(request(9)).await,
        Err(StoreError::ReadOnly)
    ));
    drop(first);
    let again = open(dir.path()).expect("lock released on close");
    assert_eq!(again.last_position().await.unwrap(), 2);
}

/// A log opened to be read in order only reads every event as a read-only
/// open does (sealed segments from their indexes, the tail scanned), and
/// refuses to read a stream rather than answer from an index it lacks.
#[tokio::test]
async fn a_log_opened_in_order_reads_everything_and_refuses_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
    append_n(&store, 0, 30).await;
    drop(store);
    wait_for_indexes(dir.path());
    let in_order = LogStore::open_in_order(dir.path()).unwrap();
    let reader = LogStore::open_read_only(dir.path()).unwrap();
    assert!(segments(dir.path()).len() > 2);
    assert_eq!(in_order.last_position().await.unwrap(), 30);
    assert_eq!(
        read_everything(&in_order).await,
        read_everything(&reader).await
    );
    let end = in_order.chain_end().await.unwrap();
    assert_eq!(end, reader.chain_end().await.unwrap());
    assert_eq!(end.last_position, 30);
    for refused in [
        in_order
            .read_stream(&stream("stock-0"), 1, 10)
            .await
            .map(drop),
        in_order.stream_version(&stream("stock-0")).await.map(drop),
    ] {
        let err = refused.unwrap_err().to_string();
        assert!(err.contains("read in order only"), "{err}");
    }
    assert_eq!(reader.stream_version(&stream("stock-0")).await.unwrap(), 10);
}

/// Reads a whole log in order, page by page, up to its first error.
async fn read_on(store: &LogStore) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        let events = store.read_all(after, 100).await?;
        match events.last() {
            Some(last) => after = last.position,
            None => return Ok(()),
        }
    }
}

/// Opened in order, the sealed segments are read lazily: a lost sidecar
/// index is made up for by reading the segment, and a truncated or missing
/// segment is reported, naming the segment, when the reads reach it.
#[tokio::test]
async fn a_log_opened_in_order_finds_lost_indexes_and_damage_when_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LogStore::open_with(dir.path(), small_segments()).unwrap();
        append_n(&store, 0, 60).await;
    }
    wait_for_indexes(dir.path());
    let segs = segments(dir.path());
    assert!(segs.len() > 4, "{} segments", segs.len());
    let whole = read_everything(&LogStore::open_read_only(dir.path()).unwrap()).await;

    let no_index = copy_dir(dir.path());
    fs::remove_file(
        no_index
            .path()
            .join(segs[1].with_extension("idx").file_name().unwrap()),
    )
    .unwrap();
    let store = LogStore::open_in_order(no_index.path()).unwrap();
    assert_eq!(store.last_position().await.unwrap(), 60);
    assert_eq!(read_everything(&store).await, whole);

    let truncated = copy_dir(dir.path());
    let victim = truncated.path().join(segs[1].file_name().unwrap());
    let len = fs::metadata(&victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let read = read_on(&LogStore::open_in_order(truncated.path()).unwrap()).await;
    assert!(
        matches!(&read, Err(StoreError::Corrupt { segment, .. }) if *segment == victim),
        "{read:?}"
    );

    let missing = copy_dir(dir.path());
    fs::remove_file(missing.path().join(segs[2].file_name().unwrap())).unwrap();
    let read = read_on(&LogStore::open_in_order(missing.path()).unwrap()).await;
    let short = missing.path().join(segs[1].file_name().unwrap());
    assert!(
        matches!(&read, Err(StoreError::Corrupt { segment, reason, .. })
            if *segment == short && reason.contains("next segment")),
        "{read:?}"
    );
}

/// Once a store is closed, its background helpers (the next segment's
/// zero-filling, sealed segments' indexes) are done: every sealed segment
/// has its index at once, and the directory no longer changes.
#[tokio::test]
async fn a_closed_store_leaves_nothing_running_in_its_directory() {
    let listing = |dir: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    // Segments large enough that zero-filling the next one takes a while,
    // filled past half (where that starts) by a few large appends.
    let options = LogOptions {
        segment_bytes_max: 32 << 20,
        ..LogOptions::default()
    };
    let big = |i: usize| {
        let events = (0..500)
            .map(|j| NewEvent {
                payload: vec![b'x'; 8 << 10],
                ..event(i * 1000 + j)
            })
            .collect();
        AppendRequest::single(
            stream("big"),
            ExpectedVersion::Any,
            Timestamp(1_760_000_000_000_000),
            events,
        )
    };
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..10 {
            store.append(big(i)).await.unwrap();
        }
        drop(store);
        let closed = listing(dir.path());
        let segs = segments(dir.path());
        assert!(segs.len() >= 2, "round {round}: the log rolled");
        for seg in &segs[..segs.len() - 1] {
            assert!(
                seg.with_extension("idx").exists(),
                "round {round}: {} has its index when the store is closed",
                seg.display()
            );
        }
        assert!(
            closed.iter().all(|(name, _)| !name.ends_with(".tmp")),
            "round {round}: no half-written file"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            listing(dir.path()) == closed,
            "round {round}: the directory changed after the store closed"
        );
    }
}

#[tokio::test]
async fn opening_a_missing_directory_read_only_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = LogStore::open_read_only(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

/// Fails the writes and syncs it is told to.
#[derive(Debug, Default)]
struct Faults {
    writes: AtomicUsize,
    syncs: AtomicUsize,
    fail_write: AtomicUsize,
    partial_write: AtomicUsize,
    fail_sync: AtomicUsize,
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl FaultInjector for Faults {
    fn before_write(&self, len: usize) -> WriteFault {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_write.load(Ordering::SeqCst) {
            WriteFault::Fail(no_space())
        } else if n == self.partial_write.load(Ordering::SeqCst) {
            WriteFault::Partial(len / 2, no_space())
        } else {
            WriteFault::None
        }
    }

    fn before_sync(&self) -> io::Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_write_or_sync_fails_the_append_and_the_log_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    faults.fail_write.store(3, Ordering::SeqCst);
    faults.partial_write.store(5, Ordering::SeqCst);
    faults.fail_sync.store(6, Ordering::SeqCst);
    let options = LogOptions {
        faults: Some(faults.clone()),
        ..LogOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options).unwrap();
    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    for i in 0..10 {
        let req = request(i);
        let id = req.streams[0].events[0].event_id;
        match store.append(req).await {
            Ok(_) => acknowledged.push(id),
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                failed.push(id);
            }
        }
    }
    // writes 3 and 5 fail; sync 6 is the sixth write's (the fourth and
    // sixth succeed in writing).
    assert_eq!(failed.len(), 3, "three injected failures");
    let all = read_everything(&store).await;
    assert_eq!(
        all.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        acknowledged
    );
    drop(store);
    let store = open(dir.path()).unwrap();
    let reopened = read_everything(&store).await;
    assert_eq!(
        reopened.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        acknowledged
    );
    for (i, e) in reopened.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    drop(store);
    assert_eq!(verify(dir.path(), None, |_| {}).unwrap().events, 7);
}

/// Regression guard for the pipelined writer: a failed fsync while other
/// batches are written behind it must fail exactly those batches, and the
/// log must continue from the last durable record with nothing of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_under_concurrent_load_lose_exactly_the_failed_appends() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    faults.fail_sync.store(5, Ordering::SeqCst);
    faults.partial_write.store(30, Ordering::SeqCst);
    let options = LogOptions {
        faults: Some(faults.clone()),
        segment_bytes_max: 64 << 10,
        ..LogOptions::default()
    };
    let store = Arc::new(LogStore::open_with(dir.path(), options).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed = 0;
            for i in 0..40 {
                let mut req = request(t * 1000 + i);
                req.streams[0].stream = stream(&format!("task-{t}"));
                let id = req.streams[0].events[0].event_id;
                match store.append(req).await {
                    Ok(_) => acknowledged.push(id),
                    Err(StoreError::Unavailable(_)) => failed += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            (acknowledged, failed)
        }));
    }
    let mut acknowledged = std::collections::HashSet::new();
    let mut failed = 0;
    for t in tasks {
        let (ids, f) = t.await.unwrap();
        acknowledged.extend(ids);
        failed += f;
    }
    assert!(failed > 0, "the injected faults failed some appends");
    let check = |all: Vec<kedai_engine::RecordedEvent>| {
        let recorded: std::collections::HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
        assert_eq!(recorded, acknowledged, "exactly the acknowledged events");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1);
        }
        for t in 0..16 {
            let versions: Vec<u64> = all
                .iter()
                .filter(|e| *e.stream.name == format!("task-{t}"))
                .map(|e| e.version)
                .collect();
            assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
        }
    };
    check(read_everything(&*store).await);
    drop(store);
    let store = LogStore::open_with(dir.path(), options_small()).unwrap();
    check(read_everything(&store).await);
    drop(store);
    verify(dir.path(), None, |_| {}).unwrap();
}

fn options_small() -> LogOptions {
    LogOptions {
        segment_bytes_max: 64 << 10,
        ..LogOptions::default()
    }
}
