//! Warehouses, products and their variations, customers.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use kedai_engine::command::Command;
use kedai_engine::command::slots::Kind;
use kedai_engine::domain::catalog::{AddWarehouse, CreateProduct, ProductChange};
use kedai_engine::domain::events::CustomerDetails;
use kedai_engine::domain::ids::{CustomerId, ProductId, WarehouseId, streams};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, READERS, WRITERS};
use crate::commands::{Fresh, idempotency_key, new_id, run};
use crate::error::{ApiError, Json, Path};
use crate::routes::{Answer, body_as, create};
use crate::state::AppState;

/// `POST /v1/warehouses`.
pub async fn add_warehouse(
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
        "warehouse",
        "warehouse_id",
        |c: AddWarehouse| (c.warehouse_id, Command::AddWarehouse(c)),
    )
    .await
}

/// `POST /v1/warehouses/{id}/default`.
pub async fn set_default_warehouse(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<WarehouseId>,
) -> Answer {
    caller.require(WRITERS)?;
    run(
        &state,
        &caller,
        &headers,
        Command::SetDefaultWarehouse { warehouse_id: id },
        None,
    )
    .await
}

/// `POST /v1/products`.
pub async fn create_product(
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
        "product",
        "product_id",
        |c: CreateProduct| (c.product_id, Command::CreateProduct(c)),
    )
    .await
}

/// `POST /v1/products/{id}/changes`: a new variation, prices, cost,
/// wholesale tiers, or a supplier's stock flag.
pub async fn change_product(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(product_id): Path<ProductId>,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let change: ProductChange = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::ChangeProduct { product_id, change },
        None,
    )
    .await
}

/// `GET /v1/products`: every product with its SKUs.
pub async fn list_products(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    Ok(axum::Json(state.read(|p| {
        let mut products: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(v) = p.shop(caller.shop) {
            for (sku, m) in &v.meta.skus {
                let id = m.product_id.map(|i| i.to_string()).unwrap_or_default();
                let entry = products.entry(id.clone()).or_insert_with(|| json!({"product_id": id, "name": m.product_name, "category": m.category, "skus": []}));
                if let Some(list) = entry["skus"].as_array_mut() {
                    list.push(json!({"sku": sku, "variation": m.variation}));
                }
            }
        }
        json!({ "products": products.into_values().collect::<Vec<_>>() })
    })))
}

/// `GET /v1/products/{id}`: the product with prices, costs and tiers.
pub async fn get_product(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ProductId>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let product = state
        .engine
        .load_state(&streams::product(caller.shop, id), Kind::Product)
        .await?;
    let created = product
        .product()
        .created
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))?;
    Ok(axum::Json(
        serde_json::to_value(created).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Deserialize)]
struct NewCustomer {
    customer_id: CustomerId,
    #[serde(flatten)]
    details: CustomerDetails,
}

/// `POST /v1/customers`.
pub async fn register_customer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let id = new_id(
        caller.shop,
        idempotency_key(&headers)?.as_deref(),
        "customer",
    );
    let body: NewCustomer = body_as(body, &[("customer_id", id)])?;
    let id = body.customer_id.to_string();
    run(
        &state,
        &caller,
        &headers,
        Command::RegisterCustomer {
            customer_id: body.customer_id,
            details: body.details,
        },
        Some(id),
    )
    .await
}

/// `PUT /v1/customers/{id}`: replaces the customer's details.
pub async fn update_customer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<CustomerId>,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let details: CustomerDetails = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::UpdateCustomer {
            customer_id: id,
            details,
        },
        None,
    )
    .await
}

/// `GET /v1/customers/{id}`.
pub async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<CustomerId>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let customer = state
        .engine
        .load_state(&streams::customer(caller.shop, id), Kind::Customer)
        .await?;
    let details = customer
        .customer()
        .details
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("customer {id} does not exist")))?;
    let mut value = serde_json::to_value(details).map_err(ApiError::internal)?;
    value["customer_id"] = json!(id);
    Ok(axum::Json(value))
}
