//! Reports and analytics over a date range (`from`, `to`: `YYYY-MM-DD`,
//! both included, in the shop's time zone; the last 30 days by default).
//! Rankings take `limit` (10 by default, 1 to 100; others are refused).

use axum::extract::State;
use axum::response::IntoResponse;
use kedai_projections::ShopView;
use kedai_projections::analytics::{Granularity, Group, RankBy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, READERS};
use crate::commands::Fresh;
use crate::error::{ApiError, Path, Query};
use crate::limits::{ANALYTICS_RANKING_DEFAULT, ANALYTICS_RANKING_MAX};
use crate::routes::{date_range, page_size_within};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    group: Option<Group>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/analytics/{report}`: `sales` (`by=day|month`), `best`
/// (`group=product|sku|category|channel|staff|customer`,
/// `by=quantity|revenue`), `locations`, `couriers`, `weekdays`, `cod`,
/// `customer-service`.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(report): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let limit = page_size_within(q.limit, ANALYTICS_RANKING_DEFAULT, ANALYTICS_RANKING_MAX)?;
    state.read(|p| {
        let empty = ShopView::default();
        let v = p.shop(caller.shop).unwrap_or(&empty);
        let today = v.meta.local_date(kedai_engine::Timestamp::now());
        let (from, to) = date_range(q.from.as_deref(), q.to.as_deref(), today)?;
        let a = &v.analytics;
        let body: Value = match report.as_str() {
            "sales" => {
                let by = match q.by.as_deref() {
                    None | Some("day") => Granularity::Day,
                    Some("month") => Granularity::Month,
                    Some(other) => return Err(ApiError::bad_request(format!("by must be day or month, not {other:?}"))),
                };
                json!(a.sales(from, to, by))
            }
            "best" => {
                let by = match q.by.as_deref() {
                    None | Some("revenue") => RankBy::Revenue,
                    Some("quantity") => RankBy::Quantity,
                    Some(other) => return Err(ApiError::bad_request(format!("by must be quantity or revenue, not {other:?}"))),
                };
                json!({"group": q.group.unwrap_or(Group::Product), "by": by, "ranking": a.best(from, to, q.group.unwrap_or(Group::Product), by, limit)})
            }
            "locations" => json!({"cities": a.locations(from, to, limit)}),
            "couriers" => json!({"couriers": a.couriers(from, to)}),
            "weekdays" => {
                let names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
                let week: Vec<Value> = a.weekdays(from, to).iter().zip(names).map(|(t, n)| json!({"weekday": n, "orders": t.orders, "revenue": t.revenue})).collect();
                json!({"weekdays": week})
            }
            "cod" => {
                let (cod, non_cod) = a.cod_split(from, to);
                json!({"cod": cod, "non_cod": non_cod})
            }
            "customer-service" => {
                let counts = v.inbox.counts_between(&v.meta, from, to);
                json!({"service": a.customer_service(from, to), "conversations_by_status": counts})
            }
            other => return Err(ApiError::not_found(format!("no report {other:?}"))),
        };
        Ok(axum::Json(json!({"from": from, "to": to, "report": report, "data": body})))
    })
}
