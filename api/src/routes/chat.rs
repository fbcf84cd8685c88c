//! Conversations (the inbox), messages in and out, labels, assignment,
//! resolution, the initial import, and message templates.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use kedai_engine::Timestamp;
use kedai_engine::command::Command;
use kedai_engine::domain::chat::{
    ChatChannel, ChatStatus, ConversationChange, ImportHistory, ReceiveMessage, SaveTemplate,
    SendMessage,
};
use kedai_projections::inbox::InboxQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, READERS, WRITERS};
use crate::commands::{CommandAnswer, Fresh, idempotency_key, new_id, run};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::{body_as, page_size};
use crate::state::AppState;

type Answer = Result<(StatusCode, Json<CommandAnswer>), ApiError>;

/// `POST /v1/conversations/inbound`: a message from a customer (from a
/// channel connector).
pub async fn receive(
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
    let cmd: ReceiveMessage = body_as(body, &[("message_id", id)])?;
    let conversation = kedai_engine::domain::chat::conversation_id(
        caller.shop,
        cmd.party.channel,
        &cmd.party.handle,
    );
    run(
        &state,
        &caller,
        &headers,
        Command::ReceiveMessage(cmd),
        Some(conversation.to_string()),
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
    let id = new_id(
        caller.shop,
        idempotency_key(&headers)?.as_deref(),
        "message",
    );
    let cmd: SendMessage = body_as(body, &[("message_id", id)])?;
    let conversation = kedai_engine::domain::chat::conversation_id(
        caller.shop,
        cmd.party.channel,
        &cmd.party.handle,
    );
    run(
        &state,
        &caller,
        &headers,
        Command::SendMessage(cmd),
        Some(conversation.to_string()),
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

/// `GET /v1/conversations`: newest activity first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<InboxParams>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
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
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(id): Path<uuid::Uuid>,
    Query(q): Query<MessagesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let limit = page_size(q.limit)?;
    state.read(|p| {
        let v = p
            .shop(caller.shop)
            .filter(|v| v.inbox.get(id).is_some())
            .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?;
        let after = q.after.unwrap_or(0);
        let page = v.inbox.messages(id, after, limit);
        let next = (page.len() == limit).then_some(after + limit);
        Ok(axum::Json(json!({"messages": page, "next": next})))
    })
}

/// `POST /v1/templates`.
pub async fn save_template(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let id = new_id(
        caller.shop,
        idempotency_key(&headers)?.as_deref(),
        "template",
    );
    let cmd: SaveTemplate = body_as(body, &[("template_id", id)])?;
    let id = cmd.template_id.to_string();
    run(
        &state,
        &caller,
        &headers,
        Command::SaveTemplate(cmd),
        Some(id),
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

/// `POST /v1/messages/template`: sends a template filled with `data` to a
/// conversation (`party`); a missing or unknown key is a 422 naming it.
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
        party: kedai_engine::domain::chat::Party,
        message_id: uuid::Uuid,
        template_id: uuid::Uuid,
        data: std::collections::BTreeMap<String, Value>,
    }
    let b: Body = body_as(body, &[("message_id", id)])?;
    // Template data may be numbers (Indoshopster's order_id: 67): as text.
    let data = b
        .data
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    let conversation =
        kedai_engine::domain::chat::conversation_id(caller.shop, b.party.channel, &b.party.handle);
    let cmd = Command::SendTemplate {
        party: b.party,
        message_id: b.message_id,
        template_id: b.template_id,
        data,
    };
    run(
        &state,
        &caller,
        &headers,
        cmd,
        Some(conversation.to_string()),
    )
    .await
}
