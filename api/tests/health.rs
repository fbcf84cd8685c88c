//! The health check says when the projections stopped following the log,
//! instead of answering "ok" while every read stays where it was.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use kedai_engine::ShopId;
use kedai_engine::domain::ids::{OrderId, streams};
use kedai_engine::testkit::append_raw;
use uuid::Uuid;

#[tokio::test]
async fn health_fails_once_the_projections_stop_following_the_log() {
    let app = common::app().await;
    let (shop, _) = app.shop("Toko Sehat").await;
    app.settle().await;
    let ok = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (ok.status, ok.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    // A payload that does not decode as its type: written by another tool,
    // or damaged before it was checksummed.
    let stream = streams::order(ShopId(shop.parse().unwrap()), OrderId(Uuid::from_u128(9)));
    let bad = append_raw(&*app.store, stream, 1, "OrderPaymentRecorded", vec![0xc1]).await;
    let mut answer = None;
    for _ in 0..200 {
        let a = app.call(Method::GET, "/healthz", None, None).await;
        if a.status != StatusCode::OK {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failing = answer.expect("the health check fails within 10 s");
    assert_eq!(failing.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failing.body["status"], "failing");
    let reason = failing.body["reason"].as_str().unwrap();
    assert!(
        reason.contains(&bad.to_string()),
        "names the position: {reason}"
    );
    assert_eq!(failing.body["projection_lag"], 1);
}
