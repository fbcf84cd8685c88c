//! Prometheus metrics (`GET /metrics`, text format): requests and their
//! latency by route and status, commands by name and outcome, events
//! appended, and, at scrape time, the store's head, the projections'
//! position and their lag.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    outcome: String,
}

/// Every metric of the API.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    commands: Family<CommandLabels, Counter>,
    command_latency: Family<RouteLabels, Histogram>,
    store_head: Gauge,
    projections_position: Gauge,
    projection_lag: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let commands = Family::<CommandLabels, Counter>::default();
        let command_latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let (store_head, projections_position, projection_lag) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        let mut registry = Registry::with_prefix("kedai");
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        registry.register("commands", "Commands run, by outcome", commands.clone());
        registry.register(
            "command_duration_seconds",
            "Time to decide and durably append a command",
            command_latency.clone(),
        );
        registry.register(
            "store_head_position",
            "Position of the last event in the store",
            store_head.clone(),
        );
        registry.register(
            "projections_position",
            "Position the projections reflect",
            projections_position.clone(),
        );
        registry.register(
            "projection_lag_events",
            "Events recorded but not yet in the projections",
            projection_lag.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            commands,
            command_latency,
            store_head,
            projections_position,
            projection_lag,
        }
    }
}

impl Metrics {
    /// Counts an answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a command.
    pub fn command(&self, name: &str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "refused" };
        self.commands
            .get_or_create(&CommandLabels {
                command: name.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.command_latency
            .get_or_create(&RouteLabels {
                route: name.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the positions as of now.
    pub fn render(&self, store_head: u64, projections: u64) -> String {
        self.store_head.set(store_head as i64);
        self.projections_position.set(projections as i64);
        self.projection_lag
            .set(store_head.saturating_sub(projections) as i64);
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.push_str("# metrics could not be encoded\n");
        }
        out
    }
}
