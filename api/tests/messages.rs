//! `POST /v1/messages/template` in process: numbers in every accepted form
//! reach one conversation, the message is outbound and queued, and every
//! kind of bad input gets a problem naming its field and records nothing.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use serde_json::{Value, json};

/// A shop with the template "Halo {{fullname}}, resi {{awb}}"; returns
/// (key, template id).
async fn shop_with_template(app: &TestApp, name: &str) -> (String, String) {
    let (_, key) = app.shop(name).await;
    let t = app
        .post(
            "/v1/templates",
            &key,
            json!({"name": "resi", "body": "Halo {{fullname}}, resi {{awb}}"}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{:?}", t.body);
    (key, t.body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_template_to_any_form_of_a_number_lands_in_one_conversation_queued() {
    let app = app().await;
    let (key, template) = shop_with_template(&app, "Toko Resi").await;
    let data = json!({"fullname": "Budi", "awb": "JNE0012345"});
    let mut conversation = None;
    let mut last = 0;
    // Indoshopster sends the number as a JSON number.
    for phone in [
        json!("+62 812-3456-7890"),
        json!("0812 3456 7890"),
        json!(6281234567890u64),
    ] {
        let sent = app
            .post(
                "/v1/messages/template",
                &key,
                json!({"template_id": template, "phone_number": phone, "data": data, "name": "Budi"}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{phone}: {:?}", sent.body);
        let types: Vec<&str> = sent.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert!(
            types.ends_with(&["MessageSent", "MessageQueued"]),
            "{types:?}"
        );
        let queued = sent.body["events"].as_array().unwrap().last().unwrap();
        assert_eq!(queued["data"]["to"].as_str(), Some("6281234567890"));
        let id = sent.body["id"].as_str().unwrap().to_owned();
        assert_eq!(conversation.get_or_insert(id.clone()), &id);
        last = sent.body["position"].as_u64().unwrap();
    }
    let conversation = conversation.unwrap();
    let messages = app
        .get(
            &format!("/v1/conversations/{conversation}/messages?min_position={last}"),
            &key,
        )
        .await;
    let list = messages.body["messages"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for m in list {
        assert_eq!(m["inbound"], json!(false));
        assert_eq!(m["text"].as_str(), Some("Halo Budi, resi JNE0012345"));
        assert_eq!(m["template_id"].as_str(), Some(template.as_str()));
        assert_eq!(m["delivery"]["status"].as_str(), Some("queued"));
        assert_eq!(m["delivery"]["to"].as_str(), Some("6281234567890"));
    }
    let one = app
        .get(&format!("/v1/conversations/{conversation}"), &key)
        .await;
    assert_eq!(
        (
            one.body["conversation"]["handle"].as_str(),
            one.body["conversation"]["status"].as_str()
        ),
        (Some("6281234567890"), Some("served"))
    );
    assert_eq!(
        app.state.projections.read(|p| p.outbox(10).len()),
        3,
        "three messages wait for a sender"
    );

    // A repeat with the same Idempotency-Key records nothing.
    let body = json!({"template_id": template, "phone_number": "60 12-345 6789", "data": data});
    let first = app
        .call_with(
            Method::POST,
            "/v1/messages/template",
            Some(&key),
            Some(body.clone()),
            &[("idempotency-key", "resi-0001")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let head = app.head().await;
    let again = app
        .call_with(
            Method::POST,
            "/v1/messages/template",
            Some(&key),
            Some(body),
            &[("idempotency-key", "resi-0001")],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["status"].as_str(), Some("already_recorded"));
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(app.head().await, head);
}

#[tokio::test]
async fn bad_template_messages_get_a_problem_naming_the_field_and_change_nothing() {
    let app = app().await;
    let (key, template) = shop_with_template(&app, "Toko A").await;
    let (other_key, other_template) = shop_with_template(&app, "Toko B").await;
    let (_, _, other_customer, _) = app.stocked_shop("Toko C").await;
    let data = json!({"fullname": "Budi", "awb": "JNE1"});
    let before = app.head().await;
    let send = |body: Value| app.post("/v1/messages/template", &key, body);

    for phone in [
        json!("12345"),
        json!("+1 415 555 0100"),
        json!("021-555-1234"),
        json!("0812.3456.7890"),
        json!("+62 0812 3456 7890"),
        json!("0812-345"),
        json!(""),
        json!(true),
        json!(-6281234567890i64),
        json!(null),
    ] {
        let bad = send(json!({"template_id": template, "phone_number": phone, "data": data})).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            "{phone}: {:?}",
            bad.body
        );
        assert_eq!(
            bad.headers["content-type"], "application/problem+json",
            "{phone}"
        );
        let why = bad.body["errors"]["phone_number"][0].as_str().unwrap_or("");
        assert!(!why.is_empty(), "{phone}: {:?}", bad.body);
    }
    let text =
        send(json!({"template_id": template, "phone_number": "+1 415 555 0100", "data": data}))
            .await;
    assert!(
        text.body["errors"]["phone_number"][0]
            .as_str()
            .unwrap()
            .contains("+62"),
        "the rule is spelled out: {:?}",
        text.body
    );

    let unknown = "0199e000-0000-7000-8000-000000000001";
    for (id, who) in [
        (unknown, "unknown"),
        (other_template.as_str(), "another shop's"),
    ] {
        let bad =
            send(json!({"template_id": id, "phone_number": "0812 3456 7890", "data": data})).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_template"),
            "{who} template: {:?}",
            bad.body
        );
        assert!(
            bad.body["errors"]["template_id"].is_array(),
            "{:?}",
            bad.body
        );
        assert!(bad.body["detail"].as_str().unwrap().contains(id));
    }

    for customer in [
        other_customer.as_str(),
        "0199e000-0000-7000-8000-000000000002",
    ] {
        let bad = send(json!({"template_id": template, "phone_number": "0812 3456 7890", "data": data, "customer_id": customer})).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_customer"),
            "{:?}",
            bad.body
        );
        assert!(
            bad.body["errors"]["customer_id"].is_array(),
            "{:?}",
            bad.body
        );
    }

    let missing = send(json!({"template_id": template, "phone_number": "0812 3456 7890", "data": {"fullname": "Budi"}})).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "template_key_missing")
    );
    assert!(
        missing.body["errors"]["data.awb"].is_array(),
        "{:?}",
        missing.body
    );
    assert!(missing.body["detail"].as_str().unwrap().contains("awb"));

    let extra = send(json!({"template_id": template, "phone_number": "0812 3456 7890", "data": {"fullname": "Budi", "awb": "1", "kurir": "JNE"}})).await;
    assert_eq!(
        (extra.status, extra.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "template_key_unknown")
    );
    assert!(extra.body["errors"]["data.kurir"].is_array());

    let nested = send(json!({"template_id": template, "phone_number": "0812 3456 7890", "data": {"fullname": {"first": "Budi"}, "awb": "1"}})).await;
    assert_eq!(
        (nested.status, nested.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );
    assert!(nested.body["errors"]["data.fullname"].is_array());

    let no_template = send(json!({"phone_number": "0812 3456 7890", "data": data})).await;
    assert_eq!(
        (no_template.status, no_template.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    assert!(
        no_template.body["detail"]
            .as_str()
            .unwrap()
            .contains("template_id")
    );
    let not_uuid =
        send(json!({"template_id": "resi", "phone_number": "0812 3456 7890", "data": data})).await;
    assert_eq!(not_uuid.status, StatusCode::UNPROCESSABLE_ENTITY);

    let malformed = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/messages/template")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from("{\"template_id\": "))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let array = app.post("/v1/messages/template", &key, json!([1, 2])).await;
    assert_eq!(array.status, StatusCode::UNPROCESSABLE_ENTITY);
    let no_key = app
        .call(
            Method::POST,
            "/v1/messages/template",
            None,
            Some(json!({"template_id": template, "phone_number": "0812 3456 7890", "data": data})),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.head().await, before, "none of it recorded anything");

    // A message sent in one shop is not visible from another.
    let sent =
        send(json!({"template_id": template, "phone_number": "0812 3456 7890", "data": data}))
            .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let conversation = sent.body["id"].as_str().unwrap();
    app.settle().await;
    for path in [
        format!("/v1/conversations/{conversation}"),
        format!("/v1/conversations/{conversation}/messages"),
    ] {
        let other = app.get(&path, &other_key).await;
        assert_eq!(
            (other.status, other.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let mine = app
        .get(&format!("/v1/conversations/{conversation}/messages"), &key)
        .await;
    assert_eq!(mine.status, StatusCode::OK);
}

#[tokio::test]
async fn messages_are_read_from_the_log_paged_by_count_with_each_delivery() {
    let app = app().await;
    let (shop, key) = app.shop("Toko Halaman").await;
    let t = app
        .post(
            "/v1/templates",
            &key,
            json!({"name": "resi", "body": "Halo {{fullname}}, resi {{awb}}"}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{:?}", t.body);
    let mut ids = Vec::new();
    let mut conversation = String::new();
    for awb in ["JNE1", "JNE2", "JNE3"] {
        let sent = app
            .post(
                "/v1/messages/template",
                &key,
                json!({"template_id": t.body["id"], "phone_number": "0812 3456 7890", "data": {"fullname": "Budi", "awb": awb}}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
        conversation = sent.body["id"].as_str().unwrap().to_owned();
        let queued = sent.body["events"].as_array().unwrap().last().unwrap();
        ids.push(queued["data"]["message_id"].as_str().unwrap().to_owned());
    }
    // The first one is sent: its delivery changes, the others stay queued.
    let outcome = kedai_engine::command::Command::RecordDispatch {
        conversation_id: conversation.parse().unwrap(),
        message_id: ids[0].parse().unwrap(),
        outcome: kedai_engine::domain::chat::DispatchOutcome::Sent {
            attempts: 2,
            gateway_message_id: Some("wamid.1".into()),
        },
    };
    let meta =
        kedai_engine::command::CommandMeta::new(kedai_engine::Actor::system("message-sender"));
    let shop = kedai_engine::ShopId(shop.parse().unwrap());
    let done = app
        .state
        .engine
        .execute(shop, &meta, &outcome)
        .await
        .unwrap();
    let page = |query: String| {
        let app = &app;
        let key = &key;
        let path = format!(
            "/v1/conversations/{conversation}/messages?min_position={}{query}",
            done.position
        );
        async move { app.get(&path, key).await }
    };
    let first = page("&limit=2".into()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let list = first.body["messages"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|m| (
                m["message_id"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
                m["delivery"]["status"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [
            (ids[0].as_str(), "Halo Budi, resi JNE1", "sent"),
            (ids[1].as_str(), "Halo Budi, resi JNE2", "queued"),
        ]
    );
    assert_eq!(list[0]["delivery"]["attempts"], json!(2));
    assert_eq!(
        list[0]["delivery"]["gateway_message_id"].as_str(),
        Some("wamid.1")
    );
    assert_eq!(first.body["next"], json!(2));
    let rest = page("&limit=2&after=2".into()).await;
    let list = rest.body["messages"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["message_id"].as_str(), Some(ids[2].as_str()));
    assert_eq!(list[0]["delivery"]["status"].as_str(), Some("queued"));
    assert_eq!(rest.body["next"], Value::Null);
    let whole = page("&limit=3".into()).await;
    assert_eq!(whole.body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(whole.body["next"], Value::Null, "a full last page: no next");
    let past = page("&after=10".into()).await;
    assert_eq!(past.body["messages"], json!([]));
    // The conversation as listed shows the same last message.
    let c = app
        .get(&format!("/v1/conversations/{conversation}"), &key)
        .await;
    assert_eq!(
        c.body["conversation"]["last_message"],
        rest.body["messages"][0]
    );
    assert_eq!(c.body["conversation"]["messages"], json!(3));
    // A conversation that does not exist is not found.
    let unknown = app
        .get(
            &format!("/v1/conversations/{}/messages", uuid::Uuid::nil()),
            &key,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
