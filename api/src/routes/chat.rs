//! Conversations (the inbox), messages in and out, labels, assignment,
//! resolution, the initial import, and message templates.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use kedai_engine::Timestamp;
use kedai_engine::command::Command;
use kedai_engine::domain::chat::{
    ChatChannel, ChatStatus, ConversationChange, ImportHistory, ReceiveMessage, SaveTemplate,
    SendMessage, SendTemplateMessage,
};
use kedai_engine::domain::ids::{CustomerId, streams};
use kedai_engine::domain::phone::PhoneNumber;
use kedai_engine::domain::{FieldError, Rejection};
use kedai_engine::{EventStore, Position, RecordedEvent, ShopId};
use kedai_projections::inbox::{self, InboxQuery};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::auth::{Caller, READERS, WRITERS};
use crate::commands::{Fresh, idempotency_key, new_id, run, run_naming};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::{Answer, body_as, create, page_size, time_range};
use crate::state::AppState;

/// `POST /v1/conversations/inbound`: a message from a customer (from a
/// channel connector).
pub async fn receive(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    // The answer names the conversation the message went to.
    create(
        &state,
        &caller,
        &headers,
        body,
        "message",
        "message_id",
        |c: ReceiveMessage| {
            let conversation = kedai_engine::domain::chat::conversation_id(
                caller.shop,
                c.party.channel,
                &c.party.handle,
            );
            (conversation, Command::ReceiveMessage(c))
        },
    )
    .await
}

/// `POST /v1/conversations/outbound`: staff write to a customer.
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    // The answer names the conversation the message went to.
    create(
        &state,
        &caller,
        &headers,
        body,
        "message",
        "message_id",
        |c: SendMessage| {
            let conversation = kedai_engine::domain::chat::conversation_id(
                caller.shop,
                c.party.channel,
                &c.party.handle,
            );
            (conversation, Command::SendMessage(c))
        },
    )
    .await
}

/// `POST /v1/conversations/import`: a channel's recent history at once.
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let cmd: ImportHistory = body_as(body, &[])?;
    run(&state, &caller, &headers, Command::ImportHistory(cmd), None).await
}

/// `POST /v1/conversations/{id}/{action}`: labels (`label`), assign
/// (`staff_id`), unassign, resolve; `DELETE .../labels/{label}` removes.
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, action)): Path<(uuid::Uuid, String)>,
    body: Option<Json<Value>>,
) -> Answer {
    caller.require(WRITERS)?;
    let tag = match action.as_str() {
        "labels" => "add_label",
        "assign" => "assign",
        "unassign" => "unassign",
        "resolve" => "resolve",
        other => {
            return Err(ApiError::not_found(format!(
                "no conversation action {other:?}; use labels, assign, unassign or resolve"
            )));
        }
    };
    let mut body = body.map(|Json(b)| b).unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("action".into(), Value::String(tag.into()));
    }
    let change: ConversationChange = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::ChangeConversation {
            conversation_id: id,
            change,
        },
        None,
    )
    .await
}

/// `DELETE /v1/conversations/{id}/labels/{label}`.
pub async fn remove_label(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, label)): Path<(uuid::Uuid, String)>,
) -> Answer {
    caller.require(WRITERS)?;
    run(
        &state,
        &caller,
        &headers,
        Command::ChangeConversation {
            conversation_id: id,
            change: ConversationChange::RemoveLabel { label },
        },
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct InboxParams {
    #[serde(default)]
    status: Option<ChatStatus>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    channel: Option<ChatChannel>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    from: Option<Timestamp>,
    #[serde(default)]
    to: Option<Timestamp>,
    /// The `next` of the previous page: `<time>,<conversation id>`.
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn parse_after(text: &str) -> Result<(Timestamp, uuid::Uuid), ApiError> {
    let bad = || ApiError::bad_request("after must be the next value of the previous page");
    let (t, id) = text.split_once(',').ok_or_else(bad)?;
    let t: Timestamp = serde_json::from_value(Value::String(t.to_owned())).map_err(|_| bad())?;
    Ok((t, id.parse().map_err(|_| bad())?))
}

/// `GET /v1/conversations`: newest activity first; `from` (included) and
/// `to` (excluded) bound the last activity.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<InboxParams>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    time_range(q.from, q.to)?;
    let query = InboxQuery {
        status: q.status,
        label: q.label,
        channel: q.channel,
        assignee: q.assignee,
        from: q.from,
        to: q.to,
        after: q.after.as_deref().map(parse_after).transpose()?,
        limit: page_size(q.limit)?,
    };
    Ok(axum::Json(state.read(|p| match p.shop(caller.shop) {
        None => json!({"conversations": [], "next": null}),
        Some(v) => {
            let page = v.inbox.list(&query);
            let next = page.next.map(|(t, id)| format!("{t},{id}"));
            json!({"conversations": page.conversations, "next": next})
        }
    })))
}

/// `GET /v1/conversations/{id}`: the conversation and the customer's
/// orders.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(id): Path<uuid::Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    state.read(|p| {
        let v = p.shop(caller.shop).ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?;
        let c = v.inbox.get(id).ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?;
        let orders = match c.customer_id {
            Some(customer) => v.orders.of_customer(customer),
            None => v.orders.of_phone(&c.handle),
        };
        let orders: Vec<Value> = orders.iter().map(|o| json!({"order_id": o.order_id, "status": o.status, "total": o.totals.total, "placed_at": o.placed_at})).collect();
        Ok(axum::Json(json!({"conversation": c, "orders": orders})))
    })
}

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    #[serde(default)]
    after: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/conversations/{id}/messages`: oldest first, paged by count.
///
/// Messages are read from the conversation's stream (the projections keep
/// only its last one), as of the position the projections reflect, so the
/// page agrees with the conversation as the inbox lists it.
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(id): Path<uuid::Uuid>,
    Query(q): Query<MessagesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let limit = page_size(q.limit)?;
    let position = state.read(|p| {
        p.shop(caller.shop)
            .filter(|v| v.inbox.get(id).is_some())
            .map(|_| p.position)
            .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))
    })?;
    let events = conversation_events(&*state.store, caller.shop, id, position).await?;
    let all = inbox::messages(&events, position).map_err(ApiError::internal)?;
    let after = q.after.unwrap_or(0);
    let page = inbox::page(&all, after, limit);
    // `next` only when messages remain (a full last page has none).
    let next = Some(after + page.len()).filter(|&n| n < all.len());
    Ok(axum::Json(json!({"messages": page, "next": next})))
}

/// Events of a conversation's stream read at once.
const CONVERSATION_READ_CHUNK: usize = 1_000;

/// A conversation's events up to position `until` (and possibly a few
/// past it: [`inbox::messages`] leaves those out).
pub async fn conversation_events(
    store: &dyn EventStore,
    shop: ShopId,
    id: uuid::Uuid,
    until: Position,
) -> Result<Vec<RecordedEvent>, ApiError> {
    let stream = streams::conversation(shop, id);
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = events.last().map_or(1, |e| e.version + 1);
        let chunk = store
            .read_stream(&stream, from, CONVERSATION_READ_CHUNK)
            .await?;
        let done = chunk.len() < CONVERSATION_READ_CHUNK
            || chunk.last().is_none_or(|e| e.position > until);
        events.extend(chunk);
        if done {
            return Ok(events);
        }
    }
}

/// `POST /v1/templates`.
pub async fn save_template(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    create(
        &state,
        &caller,
        &headers,
        body,
        "template",
        "template_id",
        |c: SaveTemplate| (c.template_id, Command::SaveTemplate(c)),
    )
    .await
}

/// `PUT /v1/templates/{id}`.
pub async fn update_template(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<uuid::Uuid>,
    Json(mut body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    if let Value::Object(map) = &mut body {
        map.insert("template_id".into(), Value::String(id.to_string()));
    }
    let cmd: SaveTemplate = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::SaveTemplate(cmd),
        Some(id.to_string()),
    )
    .await
}

/// `DELETE /v1/templates/{id}`.
pub async fn delete_template(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(template_id): Path<uuid::Uuid>,
) -> Answer {
    caller.require(WRITERS)?;
    run(
        &state,
        &caller,
        &headers,
        Command::DeleteTemplate { template_id },
        None,
    )
    .await
}

/// `GET /v1/templates`.
pub async fn list_templates(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    Ok(axum::Json(state.read(|p| {
        let list = p
            .shop(caller.shop)
            .map(|v| v.inbox.templates().into_iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        json!({"templates": list})
    })))
}

/// `POST /v1/messages/template` (Indoshopster's "send a templated
/// WhatsApp message"): `template_id`, `phone_number` (text or number, in
/// any form `phone` accepts) and `data` (values as text or numbers), with
/// optional `name`, `customer_id` and `message_id`. The filled template is
/// recorded in the conversation of the normalised number as an outbound
/// message and queued for the sender; the answer's `id` is that
/// conversation. Every problem is a 422 naming the field: an invalid
/// number (`phone_number`), an unknown template (`template_id`) or
/// customer (`customer_id`), a key the data lacks or the template does not
/// have (`data.<key>`).
pub async fn send_template(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let id = new_id(
        caller.shop,
        idempotency_key(&headers)?.as_deref(),
        "message",
    );
    #[derive(Deserialize)]
    struct Body {
        message_id: uuid::Uuid,
        template_id: uuid::Uuid,
        phone_number: Value,
        #[serde(default)]
        name: String,
        #[serde(default)]
        customer_id: Option<CustomerId>,
        data: BTreeMap<String, Value>,
    }
    let b: Body = body_as(body, &[("message_id", id)])?;
    let mut errors = Vec::new();
    // Indoshopster sends the number as a JSON number: both are taken.
    let phone_number = match &b.phone_number {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => {
            errors.push(FieldError::new(
                "phone_number",
                "must be a phone number, as text or digits",
            ));
            String::new()
        }
    };
    let mut data = BTreeMap::new();
    for (k, v) in b.data {
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                errors.push(FieldError::new(
                    format!("data.{k}"),
                    "must be text, a number or true/false",
                ));
                continue;
            }
        };
        data.insert(k, text);
    }
    let cmd = SendTemplateMessage {
        message_id: b.message_id,
        template_id: b.template_id,
        phone_number,
        name: b.name,
        customer_id: b.customer_id,
        data,
    };
    if let Err(more) = cmd.validate() {
        // A number of the wrong type was named already.
        let named = errors.iter().any(|e| e.field == "phone_number");
        errors.extend(
            more.into_iter()
                .filter(|e| !(named && e.field == "phone_number")),
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let phone = PhoneNumber::parse(&cmd.phone_number).map_err(ApiError::internal)?;
    let conversation = kedai_engine::domain::chat::conversation_id(
        caller.shop,
        ChatChannel::Whatsapp,
        phone.as_str(),
    );
    run_naming(
        &state,
        &caller,
        &headers,
        Command::SendTemplateMessage(cmd),
        Some(conversation.to_string()),
        template_problem,
    )
    .await
}

/// A template's rejections with the request's field they are about.
fn template_problem(r: Rejection) -> ApiError {
    let field = match &r {
        Rejection::UnknownTemplate { .. } => "template_id".to_owned(),
        Rejection::UnknownCustomer { .. } => "customer_id".to_owned(),
        Rejection::TemplateKeyMissing { key } | Rejection::TemplateKeyUnknown { key } => {
            format!("data.{key}")
        }
        _ => return r.into(),
    };
    let mut problem = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, r.code(), r.to_string());
    problem.errors.insert(field, vec![r.to_string()]);
    problem
}
