//! Two command engines (two kedai nodes) on one PostgreSQL database, each
//! with its own store and cache: orders of mixed quantities on the same
//! SKUs through both never oversell, and what one node records the other
//! decides on. Against the server named by `KEDAI_TEST_DATABASE_URL`, or a
//! throwaway one.

mod common;

use std::sync::Arc;

use common::*;
use kedai_engine::EventStore;
use kedai_engine::command::{Command, CommandError, Engine, EngineOptions};
use kedai_engine::domain::Rejection;
use kedai_engine::domain::catalog::ProductChange;
use kedai_engine::store::postgres::throwaway::{TestDatabase, test_database};
use kedai_engine::store::postgres::{PgOptions, PgStore};

/// A node: a store of its own and an engine that shares the database.
async fn node(db: &TestDatabase) -> Arc<dyn EventStore> {
    Arc::new(
        PgStore::connect(&db.url, PgOptions::default())
            .await
            .expect("connect"),
    )
}

/// Node A runs the world's setup; node B is a second engine on the same
/// shop.
async fn two_nodes(db: &TestDatabase) -> (Arc<World>, Arc<World>) {
    let a = World::on(node(db).await, false).await;
    let b = World {
        engine: Engine::new(
            node(db).await,
            EngineOptions {
                sole_writer: false,
                ..EngineOptions::default()
            },
        ),
        shop: a.shop,
        now: a.now,
    };
    (Arc::new(a), Arc::new(b))
}

/// Regression: a node decided orders on its own submitted reservations;
/// when the first of them lost its version to the other node, the next
/// one (expecting the version the other node's reservation had taken) was
/// recorded on top of a stock level it was never decided on, and with
/// orders of different sizes that oversold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_through_two_nodes_never_oversell() {
    const ROUNDS: i64 = 4;
    const BUYERS_PER_NODE: u128 = 12;
    const ORDERS_EACH: u128 = 4;
    const UNITS_PER_ROUND: i64 = 25;
    let db = test_database().await.expect("test database");
    let (a, b) = two_nodes(&db).await;
    let mut sold = 0i64;
    for round in 0..ROUNDS {
        a.receive("KAOS-M", MALANG, UNITS_PER_ROUND).await;
        let mut tasks = Vec::new();
        for (n, world) in [&a, &b].into_iter().enumerate() {
            for t in 0..BUYERS_PER_NODE {
                let world = Arc::clone(world);
                tasks.push(tokio::spawn(async move {
                    let mut accepted = 0;
                    for i in 0..ORDERS_EACH {
                        let quantity = 1 + ((t + i + n as u128) % 3) as i64;
                        let id = order_id((round as u128) << 32 | (n as u128) << 24 | t << 8 | i);
                        let command =
                            Command::PlaceOrder(place(id, vec![line("KAOS-M", quantity)]));
                        match world.run(command).await {
                            Ok(_) => accepted += quantity,
                            Err(CommandError::Rejected(Rejection::InsufficientStock {
                                ..
                            })) => {}
                            // Gave up after its retries: recorded nothing.
                            Err(CommandError::Conflict(_)) => {}
                            Err(e) => panic!("placing an order: {e}"),
                        }
                    }
                    accepted
                }));
            }
        }
        for t in tasks {
            sold += t.await.unwrap();
        }
        // A third engine reads the stock from the database.
        let auditor = World {
            engine: Engine::new(node(&db).await, EngineOptions::default()),
            shop: a.shop,
            now: a.now,
        };
        let (on_hand, reserved) = auditor.stock("KAOS-M", MALANG).await;
        assert_eq!(on_hand, UNITS_PER_ROUND * (round + 1));
        assert!(reserved <= on_hand, "oversold: {reserved} of {on_hand}");
        assert_eq!(reserved, sold, "every accepted order reserved its quantity");
        assert!(
            on_hand - reserved < 3,
            "the round ended sold out (demand exceeds stock), {} left",
            on_hand - reserved
        );
    }
}

/// Regression: a node whose cache was behind the other node's events
/// refused orders (unknown SKU, insufficient stock) that the database
/// would allow; a rejection now waits for the node to have read the log
/// up to the store's head, and decides again if that changed anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_decides_on_what_the_other_recorded() {
    let db = test_database().await.expect("test database");
    let a = Arc::new(World::on(node(&db).await, false).await);
    // The engine's follower learns of the other node's events only when
    // the engine asks the store itself (its head moves on those asks).
    let slow = Observed::with_slow_head(node(&db).await).await;
    let b = World {
        engine: Engine::new(
            Arc::new(slow),
            EngineOptions {
                sole_writer: false,
                ..EngineOptions::default()
            },
        ),
        shop: a.shop,
        now: a.now,
    };
    a.receive("KAOS-M", MALANG, 2).await;
    // B caches the stock (2 units) and a SKU that does not exist yet.
    b.ok(Command::PlaceOrder(place(
        order_id(1),
        vec![line("KAOS-M", 1)],
    )))
    .await;
    assert!(matches!(
        b.rejected(Command::PlaceOrder(place(
            order_id(2),
            vec![line("KAOS-XL", 1)]
        )))
        .await,
        Rejection::UnknownSku { .. }
    ));
    // A restocks and adds the variation.
    a.receive("KAOS-M", MALANG, 10).await;
    a.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::AddVariation {
            variation: variation("KAOS-XL", 60_000, 35_000),
        },
    })
    .await;
    a.receive("KAOS-XL", MALANG, 5).await;
    // Right away, B sells what only A's events make possible.
    b.ok(Command::PlaceOrder(place(
        order_id(3),
        vec![line("KAOS-M", 8)],
    )))
    .await;
    b.ok(Command::PlaceOrder(place(
        order_id(4),
        vec![line("KAOS-XL", 5)],
    )))
    .await;
    assert_eq!(b.stock("KAOS-M", MALANG).await, (12, 9));
    // And A sees B's reservations when it decides.
    assert!(matches!(
        a.rejected(Command::PlaceOrder(place(
            order_id(5),
            vec![line("KAOS-M", 4)]
        )))
        .await,
        Rejection::InsufficientStock { .. }
    ));
    a.ok(Command::PlaceOrder(place(
        order_id(6),
        vec![line("KAOS-M", 3)],
    )))
    .await;
    assert_eq!(a.stock("KAOS-M", MALANG).await, (12, 12));
}
