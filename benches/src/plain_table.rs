//! The peer baseline: the order-placing workload against a plain
//! PostgreSQL event table, the way common event-sourcing libraries use one.
//!
//! One table, `events (position bigserial, stream, version, event_id,
//! event_type, payload, recorded_at)` with a unique `(stream, version)`
//! constraint as the optimistic concurrency check. A command ("place an
//! order of one unit, reserving it") is:
//!
//! 1. catch up the SKU's stock aggregate: `SELECT` the stream's events after
//!    the version this client has cached, fold them (MessagePack payloads);
//! 2. decide: refuse if nothing is available;
//! 3. one transaction: a single two-row `INSERT` (autocommit, so the
//!    statement is the transaction): the order's first event at version 1
//!    of its own stream and the reservation at the stock stream's next
//!    version. A unique violation means another client got that version
//!    first: the command is decided again from step 1.
//!
//! This is generous to the baseline: each client keeps every aggregate it
//! has seen in memory (a library without snapshots would re-read the whole
//! stream), statements are prepared, and a command costs two round trips.
//! What it does not give, and kedai does: gap-free positions for readers
//! (a `bigserial` commits out of order), permanent event-id uniqueness
//! across retries, a hash chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use crate::sample_payload;

const SCHEMA: &str = "
CREATE TABLE events (
    position    bigserial PRIMARY KEY,
    stream      text NOT NULL,
    version     bigint NOT NULL,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    payload     bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
)";

const CATCH_UP: &str = "SELECT version, event_type, payload FROM events WHERE stream = $1 AND version > $2 ORDER BY version";

const PLACE: &str = "INSERT INTO events (stream, version, event_id, event_type, payload) VALUES \
     ($1, 1, $2, 'OrderPlaced', $3), ($4, $5, $6, 'StockReserved', $7)";

/// A stock event's payload: the quantity and what a reservation records.
#[derive(Serialize, Deserialize)]
struct StockChange {
    quantity: i64,
    order_id: Uuid,
    warehouse: String,
    note: String,
}

fn stock_payload(quantity: i64, order_id: Uuid) -> Vec<u8> {
    rmp_serde::to_vec_named(&StockChange {
        quantity,
        order_id,
        warehouse: "gudang-malang".into(),
        note: "reserved for an order placed on the storefront, one unit, regular shipping".into(),
    })
    .expect("msgpack")
}

fn stock_stream(sku: usize) -> String {
    format!("stock-SKU-{sku}")
}

/// Opens a connection driven on a task of its own.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Creates the table and `skus` stock streams with `stock` units each.
pub async fn setup(url: &str, skus: usize, stock: i64) -> anyhow::Result<()> {
    let client = connect(url).await?;
    client.batch_execute(SCHEMA).await?;
    for chunk in (0..skus).collect::<Vec<_>>().chunks(1_000) {
        let streams: Vec<String> = chunk.iter().map(|&s| stock_stream(s)).collect();
        let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
        let payloads: Vec<Vec<u8>> = chunk
            .iter()
            .map(|_| stock_payload(stock, Uuid::nil()))
            .collect();
        client
            .execute(
                "INSERT INTO events (stream, version, event_id, event_type, payload) \
                 SELECT s, 1, i, 'StockReceived', p FROM unnest($1::text[], $2::uuid[], $3::bytea[]) AS t(s, i, p)",
                &[&streams, &ids, &payloads],
            )
            .await?;
    }
    Ok(())
}

/// What a load run counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLoad {
    pub accepted: u64,
    pub rejected: u64,
    /// Unique violations: a command decided again.
    pub conflicts: u64,
    pub per_sec: f64,
}

/// A client's cached view of one stock aggregate.
#[derive(Clone, Copy, Default)]
struct Aggregate {
    version: i64,
    available: i64,
}

struct PlainClient {
    client: Client,
    catch_up: Statement,
    place: Statement,
    cache: HashMap<usize, Aggregate>,
}

enum Placed {
    Accepted,
    Rejected,
}

impl PlainClient {
    async fn new(url: &str) -> anyhow::Result<Self> {
        let client = connect(url).await?;
        let catch_up = client.prepare(CATCH_UP).await?;
        let place = client.prepare(PLACE).await?;
        Ok(PlainClient {
            client,
            catch_up,
            place,
            cache: HashMap::new(),
        })
    }

    /// Places an order of one unit of `sku`; counts conflicts.
    async fn place(
        &mut self,
        sku: usize,
        seq: u64,
        conflicts: &AtomicU64,
    ) -> anyhow::Result<Placed> {
        let stream = stock_stream(sku);
        let order_id = Uuid::now_v7();
        let order_payload = sample_payload(seq);
        loop {
            let mut aggregate = self.cache.get(&sku).copied().unwrap_or_default();
            let rows = self
                .client
                .query(&self.catch_up, &[&stream, &aggregate.version])
                .await?;
            for row in &rows {
                let version: i64 = row.get(0);
                let event_type: &str = row.get(1);
                let change: StockChange = rmp_serde::from_slice(row.get(2))?;
                match event_type {
                    "StockReceived" => aggregate.available += change.quantity,
                    "StockReserved" => aggregate.available -= change.quantity,
                    other => anyhow::bail!("unexpected event type {other}"),
                }
                aggregate.version = version;
            }
            self.cache.insert(sku, aggregate);
            if aggregate.available < 1 {
                return Ok(Placed::Rejected);
            }
            let placed = self
                .client
                .execute(
                    &self.place,
                    &[
                        &format!("order-{order_id}"),
                        &Uuid::now_v7(),
                        &order_payload,
                        &stream,
                        &(aggregate.version + 1),
                        &Uuid::now_v7(),
                        &stock_payload(1, order_id),
                    ],
                )
                .await;
            match placed {
                Ok(_) => {
                    self.cache.insert(
                        sku,
                        Aggregate {
                            version: aggregate.version + 1,
                            available: aggregate.available - 1,
                        },
                    );
                    return Ok(Placed::Accepted);
                }
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `clients` connections place one-unit orders for `duration`, each on the
/// SKU `pick(client, sequence)` names.
pub async fn order_load(
    url: &str,
    clients: usize,
    duration: Duration,
    pick: impl Fn(u64, u64) -> usize + Clone + Send + 'static,
) -> anyhow::Result<PlainLoad> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(PlainClient::new(url).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (c, mut client) in connected.into_iter().enumerate() {
        let (stop, counters, pick) = (Arc::clone(&stop), Arc::clone(&counters), pick.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sku = pick(c as u64, n);
                match client.place(sku, n, &counters[2]).await? {
                    Placed::Accepted => counters[0].fetch_add(1, Ordering::Relaxed),
                    Placed::Rejected => counters[1].fetch_add(1, Ordering::Relaxed),
                };
                n += 1;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let accepted = counters[0].load(Ordering::Relaxed);
    Ok(PlainLoad {
        accepted,
        rejected: counters[1].load(Ordering::Relaxed),
        conflicts: counters[2].load(Ordering::Relaxed),
        per_sec: accepted as f64 / secs,
    })
}

/// Stock of every SKU as the table holds it: (received, reserved), by SKU
/// stream; and the number of orders.
pub async fn stock_totals(url: &str) -> anyhow::Result<(HashMap<String, (i64, i64)>, i64)> {
    let client = connect(url).await?;
    let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
    let rows = client
        .query(
            "SELECT stream, event_type, payload FROM events WHERE stream LIKE 'stock-%'",
            &[],
        )
        .await?;
    for row in &rows {
        let change: StockChange = rmp_serde::from_slice(row.get(2))?;
        let entry = totals.entry(row.get::<_, String>(0)).or_default();
        match row.get::<_, &str>(1) {
            "StockReceived" => entry.0 += change.quantity,
            _ => entry.1 += change.quantity,
        }
    }
    let orders: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'",
            &[],
        )
        .await?
        .get(0);
    Ok((totals, orders))
}

/// Checks that no SKU is oversold and that every accepted order reserved
/// one unit; returns the units reserved.
pub async fn check_not_oversold(url: &str, accepted: u64) -> anyhow::Result<i64> {
    let (totals, orders) = stock_totals(url).await?;
    let mut reserved_all = 0;
    for (stream, (received, reserved)) in &totals {
        anyhow::ensure!(
            reserved <= received,
            "{stream} oversold: {reserved} reserved of {received}"
        );
        reserved_all += reserved;
    }
    anyhow::ensure!(
        reserved_all == orders && orders == accepted as i64,
        "{accepted} orders accepted, {orders} recorded, {reserved_all} units reserved"
    );
    Ok(reserved_all)
}

/// A SKU spread over `skus` (a cheap hash of client and sequence).
pub fn spread(skus: usize) -> impl Fn(u64, u64) -> usize + Clone + Send + 'static {
    move |client, n| {
        ((client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
            % skus as u64) as usize
    }
}
