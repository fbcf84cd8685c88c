//! kedai's HTTP API (axum), version 1, and the `kedai` binary's pieces.
//!
//! Every command of the engine is an endpoint and every projection a
//! read; JSON in and out; errors are `application/problem+json`; bearer
//! keys per shop with roles; `Idempotency-Key` on commands; commands
//! answer with a position that reads can wait for (`min_position`).
//!
//! The route table below is the single source of both the router and the
//! OpenAPI document (`GET /openapi.json`), so they cannot drift apart.
//!
//! Layout:
//! - [`error`]: problem+json errors, and the JSON, query and path
//!   extractors whose rejections are problems.
//! - [`auth`]: keys, roles, the operator token.
//! - [`commands`]: running a command for a request (idempotency, answers,
//!   `min_position`).
//! - [`routes`]: the handlers, by area.
//! - [`metrics`]: Prometheus metrics.
//! - [`limits`]: every limit, named.
//! - [`serve`]: `kedai serve` (store, projections, runner, listener,
//!   graceful shutdown, the demo shop) and `kedai seed`.
//! - [`state`]: what handlers share.
//! - [`workers`]: what runs beside the API: the checkout abandonment
//!   scheduler and the sender of queued messages (with its WhatsApp-like
//!   HTTP adapter).
//! - [`webhooks`]: the webhook delivery worker (follows the log, signs,
//!   POSTs, retries, records outcomes).

pub mod auth;
pub mod commands;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod serve;
pub mod state;
pub mod webhooks;
pub mod workers;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, PathsBuilder,
    Ref, Required, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ApiError;
use crate::routes::{
    analytics, catalog, chat, events, money, ops, orders, shops, stock, webhooks as hooks,
};
use crate::state::AppState;

/// What a route's success answer is, for the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// A command: 201 (or 200 for a repeat) with a `CommandAnswer`.
    Command,
    /// A read: 200 with a JSON object.
    Read,
}

macro_rules! api {
    ($( $method:ident $path:literal => $handler:path, $answers:ident, $tag:literal, $summary:literal; )*) => {
        /// Every v1 route and the operational ones.
        fn routes() -> Router<AppState> {
            Router::new() $( .route($path, axum::routing::$method($handler)) )*
        }

        /// (method, path, answers, tag, summary) of every route.
        const TABLE: &[(&str, &str, Answers, &str, &str)] = &[ $( (stringify!($method), $path, Answers::$answers, $tag, $summary), )* ];
    };
}

api! {
    post "/v1/shops" => shops::create_shop, Command, "shops", "Create a shop and its owner key (operator token)";
    get "/v1/shop" => shops::get_shop, Read, "shops", "The caller's shop: settings and warehouses";
    put "/v1/shop/settings" => shops::put_settings, Command, "shops", "Replace the shop's settings (owner)";
    post "/v1/keys" => shops::create_key, Command, "keys", "Issue a key with a role; the key is shown once (owner)";
    get "/v1/keys" => shops::list_keys, Read, "keys", "The shop's keys, without secrets (owner)";
    delete "/v1/keys/{key_id}" => shops::revoke_key, Command, "keys", "Revoke a key (owner)";
    post "/v1/warehouses" => catalog::add_warehouse, Command, "catalog", "Add a warehouse (the first becomes the default)";
    post "/v1/warehouses/{warehouse_id}/default" => catalog::set_default_warehouse, Command, "catalog", "Make a warehouse the default";
    post "/v1/products" => catalog::create_product, Command, "catalog", "Create a product with its variations (SKUs)";
    get "/v1/products" => catalog::list_products, Read, "catalog", "Products and their SKUs";
    get "/v1/products/{product_id}" => catalog::get_product, Read, "catalog", "A product with prices, costs and wholesale tiers";
    post "/v1/products/{product_id}/changes" => catalog::change_product, Command, "catalog", "Add a variation, or change prices, cost, wholesale tiers or a supplier's stock flag";
    post "/v1/customers" => catalog::register_customer, Command, "catalog", "Register a customer";
    get "/v1/customers/{customer_id}" => catalog::get_customer, Read, "catalog", "A customer";
    put "/v1/customers/{customer_id}" => catalog::update_customer, Command, "catalog", "Replace a customer's details";
    get "/v1/customers/{customer_id}/orders" => orders::of_customer, Read, "orders", "A customer's orders";
    post "/v1/stock/moves" => stock::move_stock, Command, "stock", "Receive, remove, transfer or count stock";
    get "/v1/stock" => stock::levels, Read, "stock", "Stock per SKU and warehouse, in SKU then warehouse order, a page at a time (limit; after = the next of the page before, SKU@warehouse-id, or a SKU alone to continue after all its warehouses); warehouse_id filters";
    get "/v1/stock/low" => stock::low, Read, "stock", "Items at or below the low-stock threshold";
    get "/v1/stock/{sku}" => stock::of_sku, Read, "stock", "One SKU in every warehouse, and its total";
    get "/v1/stock/{sku}/history" => stock::history, Read, "stock", "A SKU's stock history (date, user, description, order, in, out, last), oldest first, a page at a time (limit, after = the next of the page before)";
    post "/v1/orders" => orders::place, Command, "orders", "Place an order; its stock is reserved in the same append";
    get "/v1/orders" => orders::list, Read, "orders", "Orders, filtered, sorted and paged";
    get "/v1/orders/counts" => orders::counts, Read, "orders", "Orders per status";
    get "/v1/orders/{order_id}" => orders::get, Read, "orders", "An order with totals, payments, COD figures and timeline";
    post "/v1/orders/{order_id}/payments" => orders::pay, Command, "orders", "Record a payment (installments allowed)";
    post "/v1/orders/{order_id}/refunds" => orders::refund, Command, "orders", "Refund money paid for a cancelled, returned or lost order";
    post "/v1/orders/{order_id}/{action}" => orders::transition, Command, "orders", "process, pack, ready, ship (awb), deliver, complete, cancel, return, receive-return, lost";
    get "/v1/balance" => money::balance, Read, "money", "Pending, available and withdrawing balances, and totals earned";
    get "/v1/ledger" => money::ledger, Read, "money", "Ledger entries with the balance after each";
    post "/v1/wallet/entries" => money::wallet_entry, Command, "money", "Top-up, compensation, return claim, or COD settlement (owner)";
    post "/v1/withdrawals" => money::request_withdrawal, Command, "money", "Request a withdrawal to the bank (owner)";
    get "/v1/withdrawals" => money::withdrawals, Read, "money", "Withdrawals";
    post "/v1/withdrawals/{withdrawal_id}/{action}" => money::act_on_withdrawal, Command, "money", "review, complete (transfer_reference), reject (reason), cancel (owner)";
    post "/v1/expenses" => money::record_expense, Command, "money", "Record an expense";
    delete "/v1/expenses/{expense_id}" => money::void_expense, Command, "money", "Void an expense";
    post "/v1/checkouts" => money::start_checkout, Command, "checkouts", "Start a checkout";
    get "/v1/checkouts" => money::list_checkouts, Read, "checkouts", "Checkouts newest first, by status (open, completed, abandoned), with counts and the abandonment rate";
    get "/v1/checkouts/{checkout_id}" => money::get_checkout, Read, "checkouts", "A checkout";
    put "/v1/checkouts/{checkout_id}" => money::update_checkout, Command, "checkouts", "Update a checkout's content";
    post "/v1/checkouts/{checkout_id}/complete" => money::complete_checkout, Command, "checkouts", "Complete a checkout by placing its order";
    post "/v1/conversations/inbound" => chat::receive, Command, "chat", "A message from a customer";
    post "/v1/conversations/outbound" => chat::send, Command, "chat", "A message to a customer";
    post "/v1/conversations/import" => chat::import, Command, "chat", "Import a channel's recent history (15 conversations, 30 messages each)";
    get "/v1/conversations" => chat::list, Read, "chat", "Conversations, newest first, filtered";
    get "/v1/conversations/{conversation_id}" => chat::get, Read, "chat", "A conversation and the customer's orders";
    get "/v1/conversations/{conversation_id}/messages" => chat::messages, Read, "chat", "A conversation's messages";
    post "/v1/conversations/{conversation_id}/{action}" => chat::change, Command, "chat", "labels (label), assign (staff_id), unassign, resolve";
    delete "/v1/conversations/{conversation_id}/labels/{label}" => chat::remove_label, Command, "chat", "Remove a label";
    post "/v1/templates" => chat::save_template, Command, "chat", "Create a message template with {{placeholders}}";
    get "/v1/templates" => chat::list_templates, Read, "chat", "Message templates";
    put "/v1/templates/{template_id}" => chat::update_template, Command, "chat", "Change a template";
    delete "/v1/templates/{template_id}" => chat::delete_template, Command, "chat", "Delete a template";
    post "/v1/messages/template" => chat::send_template, Command, "chat", "Send a template filled with data to a WhatsApp number (template_id, phone_number, data): recorded in the conversation and queued for the sender";
    post "/v1/webhooks" => hooks::create, Command, "webhooks", "Subscribe a callback URL to triggers; answers with the signing secret, shown once (owner)";
    get "/v1/webhooks" => hooks::list, Read, "webhooks", "Webhook subscriptions, without secrets";
    get "/v1/webhooks/{webhook_id}" => hooks::get, Read, "webhooks", "A webhook subscription with its delivery counts";
    post "/v1/webhooks/{webhook_id}/pause" => hooks::pause, Command, "webhooks", "Pause: nothing is sent; events meanwhile are never sent (owner)";
    post "/v1/webhooks/{webhook_id}/resume" => hooks::resume, Command, "webhooks", "Resume a paused or disabled subscription; nothing missed is replayed (owner)";
    post "/v1/webhooks/{webhook_id}/rotate-secret" => hooks::rotate_secret, Command, "webhooks", "A new signing secret (given or made), shown once (owner)";
    delete "/v1/webhooks/{webhook_id}" => hooks::delete, Command, "webhooks", "Delete a subscription (owner)";
    get "/v1/webhooks/{webhook_id}/deliveries" => hooks::deliveries, Read, "webhooks", "The delivery log: every attempt, oldest first, paged with after=";
    get "/v1/analytics/{report}" => analytics::report, Read, "analytics", "sales, best, locations, couriers, weekdays, cod, customer-service";
    get "/v1/events" => events::feed, Read, "events", "The shop's events after a position (auditor, owner)";
    get "/v1/events/stream" => events::live, Read, "events", "The shop's events as server-sent events, resumable with Last-Event-ID";
    get "/v1/streams/{stream}/events" => events::history, Read, "events", "One entity's history";
    get "/healthz" => ops::health, Read, "ops", "Health, store head and projection lag";
    get "/metrics" => ops::metrics, Read, "ops", "Prometheus metrics";
    get "/openapi.json" => ops::openapi, Read, "ops", "This document";
}

/// The whole application: routes, limits, request ids, tracing, metrics.
pub fn router(state: AppState) -> Router {
    routes()
        .fallback(|| async { ApiError::not_found("no such route; see GET /openapi.json") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method") })
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(limits::BODY_BYTES_MAX))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits::REQUEST_TIMEOUT))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("a handler panicked").into_response()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Counts every answer by route and status.
async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    state.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The OpenAPI document, built from the route table.
pub fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for &(method, path, answers, tag, summary) in TABLE {
        let method = match method {
            "get" => HttpMethod::Get,
            "post" => HttpMethod::Post,
            "put" => HttpMethod::Put,
            "delete" => HttpMethod::Delete,
            other => unreachable!("method {other} in the route table"),
        };
        let mut op = OperationBuilder::new().tag(tag).summary(Some(summary));
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new())),
            );
        }
        if matches!(method, HttpMethod::Post | HttpMethod::Put) {
            let body = ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().description(Some(
                    "The command's fields; see the README and the engine's types",
                ))))
                .build();
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", body)
                    .build(),
            ));
        }
        let problem = ResponseBuilder::new()
            .description("A problem (RFC 9457)")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        op = match answers {
            Answers::Command => op
                .response(
                    "201",
                    ResponseBuilder::new().description("Recorded").content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("CommandAnswer")))
                            .build(),
                    ),
                )
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("Already recorded (a repeated Idempotency-Key)"),
                )
                .response("422", problem.clone())
                .response("409", problem.clone()),
            Answers::Read => op.response(
                "200",
                ResponseBuilder::new().description("OK").content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new()))
                        .build(),
                ),
            ),
        };
        op = op.response("401", problem.clone()).response("404", problem);
        paths = paths.path(
            path,
            PathItemBuilder::new().operation(method, op.build()).build(),
        );
    }
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("kedai")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Event-sourced order and inventory engine: the v1 HTTP API",
                ))
                .build(),
        )
        .paths(paths.build())
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".into(), error::Problem::schema());
    components
        .schemas
        .insert("CommandAnswer".into(), commands::CommandAnswer::schema());
    components.schemas.insert(
        commands::EventView::name().into(),
        commands::EventView::schema(),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}
