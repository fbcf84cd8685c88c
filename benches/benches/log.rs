//! Criterion benches of the embedded log's hot paths, and of decoding the
//! event payloads its records carry.
//!
//! Back of the envelope (this machine: 2 cores, ~8,000-9,000 fdatasync/s
//! on preallocated files, ~360 MiB/s sequential writes):
//! - encoding a ~370-byte record (MessagePack + CRC32C + BLAKE3): ~1 µs;
//! - a durable append of 1 event from 1 writer: one fsync, ~110-160 µs;
//!   100 events per append: the fsync plus ~100 µs of encoding;
//! - reading the log back: a pread per 10,000 events and ~0.5 µs of
//!   decoding and checksum per event;
//! - opening: sealed segments load their sidecar index (no record is
//!   decoded), the last segment is scanned.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kedai_benches::{append_load, bench_shop, sample_append, sample_payload};
use kedai_engine::domain::DomainEvent;
use kedai_engine::store::log::format::{
    BODY_PREFIX_LEN, Envelope, GENESIS_HASH, decode_envelope, encode_body, encode_record,
};
use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::{EventStore, Role, StreamId};
use uuid::Uuid;

fn encode(c: &mut Criterion) {
    let payload = sample_payload(7);
    let envelope = Envelope {
        shop: Uuid::from_u128(1),
        stream: "order-01929a6e-7c3d-7000-8000-00000000002a",
        version: 3,
        event_id: Uuid::now_v7(),
        recorded_at: 1_760_000_000_000_000,
        role: Role::Staff.code(),
        actor: "staff:ayu",
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        event_type: "OrderLineReserved",
        schema_version: 1,
        payload: &payload,
    };
    let mut buf = Vec::with_capacity(1 << 16);
    let mut group = c.benchmark_group("log_record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_record(&mut buf, &GENESIS_HASH, 42, &envelope)
        })
    });
    // Reading the envelope back: kedai's reader (field by field for the
    // shape it writes) against the generic MessagePack decoder.
    buf.clear();
    encode_body(&mut buf, &GENESIS_HASH, 42, &envelope);
    group.bench_function("decode_envelope", |b| {
        b.iter(|| decode_envelope(black_box(&buf)).map(|e| e.version))
    });
    group.bench_function("decode_envelope_generic", |b| {
        b.iter(|| {
            rmp_serde::from_slice::<Envelope>(&black_box(&buf)[BODY_PREFIX_LEN..])
                .map(|e| e.version)
        })
    });
    group.finish();
}

fn durable_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("log_append_durable");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for writers in [1usize, 8, 64] {
        for batch in [1usize, 100] {
            group.throughput(Throughput::Elements((writers * batch) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("writers_{writers}"), format!("batch_{batch}")),
                &(writers, batch),
                |b, &(writers, batch)| {
                    let dir = tempfile::tempdir_in(".").unwrap();
                    let store: Arc<dyn EventStore> = Arc::new(LogStore::open(dir.path()).unwrap());
                    // One iteration: every writer appends one batch, concurrently.
                    b.to_async(&runtime).iter_custom(|iters| {
                        let store = Arc::clone(&store);
                        async move {
                            let start = Instant::now();
                            let mut tasks = Vec::with_capacity(writers);
                            for w in 0..writers {
                                let store = Arc::clone(&store);
                                tasks.push(tokio::spawn(async move {
                                    let stream = StreamId::new(bench_shop(), format!("w-{w}"));
                                    for i in 0..iters {
                                        store
                                            .append(sample_append(&stream, batch, i))
                                            .await
                                            .unwrap();
                                    }
                                }));
                            }
                            for t in tasks {
                                t.await.unwrap();
                            }
                            start.elapsed()
                        }
                    });
                },
            );
        }
    }
    group.finish();
}

fn read_and_open(c: &mut Criterion) {
    const EVENTS: u64 = 200_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = {
        // Fill with concurrent writers: much faster than one at a time.
        let dir = tempfile::tempdir_in(".").unwrap();
        let store = Arc::new(LogStore::open(dir.path()).unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        runtime.block_on(async {
            while store.stats().events < EVENTS && Instant::now() < deadline {
                append_load(store.clone(), 16, 100, Duration::from_millis(200)).await;
            }
        });
        drop(store);
        dir
    };
    let events = LogStore::open_read_only(dir.path()).unwrap();
    let total = runtime.block_on(events.last_position()).unwrap();
    drop(events);
    let mut group = c.benchmark_group("log_read");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(total));
    group.bench_function("read_all", |b| {
        let store = LogStore::open_read_only(dir.path()).unwrap();
        b.to_async(&runtime).iter(|| async {
            let mut after = 0;
            loop {
                let batch = store.read_all(after, 10_000).await.unwrap();
                let Some(last) = batch.last() else { break };
                after = last.position;
            }
            after
        })
    });
    group.bench_function("open_for_writing", |b| {
        b.iter(|| LogStore::open_with(dir.path(), LogOptions::default()).unwrap())
    });
    group.bench_function("open_read_only", |b| {
        b.iter(|| LogStore::open_read_only(dir.path()).unwrap())
    });
    group.finish();
}

/// Decoding event payloads (MessagePack maps with field names, by
/// rmp-serde) over every event of a small generated shop and over its
/// orders placed (the biggest payloads, most of a rebuild's decoding),
/// into the engine's owned events and, for orders placed, as the
/// projections read them (`PlacedRef`, texts borrowed from the payload).
fn payloads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let events = runtime.block_on(async {
        let config = kedai_fixtures::FixtureConfig {
            shops: 1,
            orders_per_shop: 300,
            days: 30,
            ..Default::default()
        };
        let store = kedai_fixtures::generate_in_memory(&config).await.unwrap();
        store.read_all(0, 1_000_000).await.unwrap()
    });
    let placed: Vec<_> = events
        .iter()
        .filter(|e| &*e.event_type == "OrderPlaced")
        .cloned()
        .collect();
    let mut group = c.benchmark_group("event_payload");
    for (name, events) in [("every_event", &events), ("order_placed", &placed)] {
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| {
                for e in events.iter() {
                    black_box(DomainEvent::decode(&e.event_type, &e.payload).unwrap());
                }
            })
        });
    }
    // What the projections read of an order placed, texts borrowed.
    group.throughput(Throughput::Elements(placed.len() as u64));
    group.bench_function(BenchmarkId::new("read_borrowed", "order_placed"), |b| {
        b.iter(|| {
            for e in placed.iter() {
                black_box(kedai_projections::placed::PlacedRef::decode(&e.payload).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, encode, payloads, durable_append, read_and_open);
criterion_main!(benches);
