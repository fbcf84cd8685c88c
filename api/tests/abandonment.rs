//! Checkout abandonment on a manual clock (no real time passes): the shop
//! setting and its validation, the scheduler sleeping until exactly the
//! next deadline and abandoning then, an update moving the deadline, an
//! abandoned checkout refused on completion, a deadline passed while
//! kedai was down honoured after the restart, and two schedulers
//! recording one abandonment.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use kedai_api::serve::{Workers, start_with_workers};
use kedai_api::workers::abandonment::Scheduler;
use kedai_api::workers::outbox::RetryPolicy;
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::domain::ids::streams;
use kedai_engine::{EventStore, ShopId};
use kedai_projections::Projections;
use kedai_projections::runner::{Runner, rebuild};
use serde_json::{Value, json};
use tokio::sync::watch;

fn cart(quantity: i64) -> Value {
    json!({"domain": "tokokain.myshoppegram.com", "content": {
        "items": [{"sku": "KAOS-M", "product_name": "Kaos Polos", "name": "M", "price": 50_000, "quantity": quantity}],
        "customer": {"first_name": "Abu", "last_name": "Bakar", "phone": "0812 3456 7890"}}})
}

fn status(p: &Projections, checkout: &str) -> Option<String> {
    let id: uuid::Uuid = checkout.parse().unwrap();
    p.shops.values().find_map(|v| v.checkouts.get(id)).map(|c| {
        serde_json::to_value(c.status)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    })
}

fn is(checkout: &str, want: &'static str) -> impl FnMut(&Projections) -> bool {
    let checkout = checkout.to_owned();
    move |p| status(p, &checkout).as_deref() == Some(want)
}

/// How many `CheckoutAbandoned` events a checkout's stream holds.
async fn abandonments(store: &dyn EventStore, shop: ShopId, checkout: &str) -> usize {
    let stream = streams::checkout(shop, checkout.parse().unwrap());
    store
        .read_stream(&stream, 0, 1_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| &*e.event_type == "CheckoutAbandoned")
        .count()
}

fn spawn_scheduler(
    app: &TestApp,
    clock: &Arc<kedai_engine::clock::ManualClock>,
) -> watch::Sender<bool> {
    let scheduler = Scheduler::new(
        Arc::clone(&app.state.engine),
        app.state.projections.clone(),
        clock.clone(),
    );
    let (stop, rx) = watch::channel(false);
    tokio::spawn(scheduler.run(rx));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_checkout_is_abandoned_at_the_shop_time_and_then_refused() {
    let clock = manual_clock();
    let app = app_on(clock.clone()).await;
    let (key, _, customer, _) = app.stocked_shop("Toko Kain").await;
    app.settle().await;

    // The setting: validated, then 30 minutes.
    let shop = app.get("/v1/shop", &key).await;
    let mut settings = shop.body["settings"].clone();
    assert_eq!(
        settings["checkout_abandon_minutes"],
        json!(60),
        "the default"
    );
    let before = app.head().await;
    for bad in [json!(0), json!(10_081)] {
        settings["checkout_abandon_minutes"] = bad.clone();
        let refused = app.put("/v1/shop/settings", &key, settings.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            refused.body
        );
        assert_eq!(refused.headers["content-type"], "application/problem+json");
        assert!(
            refused.body["errors"]["settings.checkout_abandon_minutes"].is_array(),
            "{bad}: {:?}",
            refused.body
        );
    }
    assert_eq!(app.head().await, before, "nothing recorded");
    settings["checkout_abandon_minutes"] = json!(30);
    let set = app.put("/v1/shop/settings", &key, settings.clone()).await;
    assert_eq!(set.status, StatusCode::CREATED, "{:?}", set.body);

    let _stop = spawn_scheduler(&app, &clock);
    let started = app.post("/v1/checkouts", &key, cart(1)).await;
    assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
    let checkout = started.body["id"].as_str().unwrap().to_owned();
    // The scheduler sleeps until exactly 30 minutes after the start.
    assert!(
        clock
            .wait_for_sleepers(std::time::Duration::from_secs(10), |s| s
                == [minutes(T0, 30)])
            .await,
        "sleepers: {:?}",
        clock.sleepers()
    );
    clock.set(minutes(T0, 29));
    let updated = app
        .put(
            &format!("/v1/checkouts/{checkout}"),
            &key,
            cart(2)["content"].clone(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::CREATED, "{:?}", updated.body);
    // The update moves the deadline: 30 minutes from the update.
    assert!(
        clock
            .wait_for_sleepers(std::time::Duration::from_secs(10), |s| s
                == [minutes(T0, 59)])
            .await,
        "sleepers: {:?}",
        clock.sleepers()
    );
    clock.set(minutes(T0, 58));
    assert_eq!(
        app.state
            .projections
            .read(|p| status(p, &checkout))
            .as_deref(),
        Some("open")
    );
    clock.set(minutes(T0, 59));
    until(
        &app.state.projections,
        "the checkout abandoned",
        is(&checkout, "abandoned"),
    )
    .await;

    let list = app.get("/v1/checkouts?status=abandoned", &key).await;
    assert_eq!(list.status, StatusCode::OK);
    let listed = &list.body["checkouts"][0];
    assert_eq!(listed["checkout_id"].as_str(), Some(checkout.as_str()));
    assert_eq!(
        listed["abandoned_at"],
        serde_json::to_value(minutes(T0, 59)).unwrap()
    );
    assert_eq!(
        listed["last_activity"],
        serde_json::to_value(minutes(T0, 29)).unwrap()
    );
    assert_eq!(list.body["counts"]["abandoned"], json!(1));
    assert_eq!(list.body["abandon_after_minutes"], json!(30));
    let one = app.get(&format!("/v1/checkouts/{checkout}"), &key).await;
    assert_eq!(one.body["status"].as_str(), Some("abandoned"));

    // Completing it now is refused, clearly, and records nothing.
    let head = app.head().await;
    let late = app
        .post(
            &format!("/v1/checkouts/{checkout}/complete"),
            &key,
            TestApp::order(&customer, "KAOS-M", 1),
        )
        .await;
    assert_eq!(
        (late.status, late.code()),
        (StatusCode::CONFLICT, "checkout_closed")
    );
    assert!(
        late.body["detail"].as_str().unwrap().contains("Abandoned"),
        "{:?}",
        late.body
    );
    let changed = app
        .put(
            &format!("/v1/checkouts/{checkout}"),
            &key,
            cart(3)["content"].clone(),
        )
        .await;
    assert_eq!(changed.status, StatusCode::CONFLICT);
    assert_eq!(app.head().await, head);

    // A checkout completed in time is never abandoned.
    let second = app.post("/v1/checkouts", &key, cart(1)).await;
    let second = second.body["id"].as_str().unwrap().to_owned();
    clock.set(minutes(T0, 80));
    let done = app
        .post(
            &format!("/v1/checkouts/{second}/complete"),
            &key,
            TestApp::order(&customer, "KAOS-M", 1),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    app.settle().await;
    clock.set(minutes(T0, 300));
    assert!(
        clock
            .wait_for_sleepers(std::time::Duration::from_secs(2), |s| s.is_empty())
            .await
    );
    app.settle().await;
    assert_eq!(
        app.state
            .projections
            .read(|p| status(p, &second))
            .as_deref(),
        Some("completed")
    );
    let shop: ShopId = app
        .state
        .projections
        .read(|p| *p.shops.keys().next().unwrap());
    assert_eq!(abandonments(&*app.store, shop, &checkout).await, 1);
    assert_eq!(abandonments(&*app.store, shop, &second).await, 0);
    let counts = app.get("/v1/checkouts", &key).await;
    assert_eq!(
        counts.body["counts"],
        json!({"open": 0, "completed": 1, "abandoned": 1, "abandonment_rate_bp": 5000})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passed_while_kedai_was_down_is_honoured_after_the_restart() {
    let dir = data_dir();
    let clock = manual_clock();
    let workers = || Workers {
        clock: clock.clone(),
        sender: None,
        retry: RetryPolicy::default(),
    };
    let running = start_with_workers(dir.path(), &quick_log(), workers())
        .await
        .unwrap();
    let app = TestApp::on(running.state.clone());
    let (key, _, _, _) = app.stocked_shop("Toko Malam").await;
    let started = app.post("/v1/checkouts", &key, cart(1)).await;
    let checkout = started.body["id"].as_str().unwrap().to_owned();
    assert!(
        clock
            .wait_for_sleepers(std::time::Duration::from_secs(10), |s| s
                == [minutes(T0, 60)])
            .await
    );
    drop(app);
    running.stop().await.unwrap();

    // Three hours pass while kedai is down.
    clock.set(minutes(T0, 180));
    let running = start_with_workers(dir.path(), &quick_log(), workers())
        .await
        .unwrap();
    until(
        &running.projections,
        "the checkout abandoned after the restart",
        is(&checkout, "abandoned"),
    )
    .await;
    let shop: ShopId = running
        .projections
        .read(|p| *p.shops.keys().next().unwrap());
    let view = running.projections.read(|p| {
        p.shop(shop)
            .unwrap()
            .checkouts
            .get(checkout.parse().unwrap())
            .cloned()
            .unwrap()
    });
    assert_eq!(view.abandoned_at, Some(minutes(T0, 180)));
    assert_eq!(view.last_activity, T0);
    assert_eq!(
        abandonments(&*running.state.store, shop, &checkout).await,
        1
    );
    running.stop().await.unwrap();

    // Again: nothing more to record.
    clock.set(minutes(T0, 400));
    let running = start_with_workers(dir.path(), &quick_log(), workers())
        .await
        .unwrap();
    let head = running.state.store.last_position().await.unwrap();
    running
        .projections
        .wait_for(head, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        running
            .projections
            .read(|p| p.due_checkouts(minutes(T0, 400), 10).is_empty())
    );
    assert_eq!(
        abandonments(&*running.state.store, shop, &checkout).await,
        1
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_record_one_abandonment() {
    let clock = manual_clock();
    let app = app_on(clock.clone()).await;
    let (key, _, _, _) = app.stocked_shop("Toko Dua").await;
    let started = app.post("/v1/checkouts", &key, cart(1)).await;
    let checkout = started.body["id"].as_str().unwrap().to_owned();
    app.settle().await;
    clock.set(minutes(T0, 61));
    // Two engines on one store, as two nodes would have, reading the same
    // projections, held still so that both find the checkout due.
    let still = rebuild(&*app.store, Projections::new(), None, |_| {})
        .await
        .unwrap();
    let (_held, projections) = Runner::new(Arc::clone(&app.store), still, None);
    let schedulers: Vec<Scheduler> = (0..2)
        .map(|_| {
            let engine = Arc::new(Engine::new(
                Arc::clone(&app.store),
                EngineOptions::default(),
            ));
            Scheduler::new(engine, projections.clone(), clock.clone())
        })
        .collect();
    let (a, b) = tokio::join!(schedulers[0].round(), schedulers[1].round());
    assert_eq!((a.due, b.due), (1, 1), "both found it due");
    assert_eq!(a.failed + b.failed, 0);
    assert_eq!(a.recorded + b.recorded, 1, "{a:?} {b:?}");
    let shop: ShopId = app
        .state
        .projections
        .read(|p| *p.shops.keys().next().unwrap());
    assert_eq!(abandonments(&*app.store, shop, &checkout).await, 1);
    // Later rounds (the projections still show it open) find it recorded.
    let (again, after) = tokio::join!(schedulers[0].round(), schedulers[1].round());
    assert_eq!((again.recorded, after.recorded), (0, 0));
    assert_eq!((again.already, after.already), (1, 1));
    assert_eq!(abandonments(&*app.store, shop, &checkout).await, 1);
}
