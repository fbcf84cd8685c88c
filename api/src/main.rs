//! The `kedai` binary: `kedai serve` runs the HTTP API on the embedded log
//! (or PostgreSQL); `kedai seed` writes realistic fixture data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kedai_api::serve::{self, ServeConfig, StoreChoice};
use kedai_api::webhooks::WorkerConfig;
use kedai_api::workers::whatsapp::WhatsappConfig;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "kedai",
    version,
    about = "Event-sourced order and inventory engine for online sellers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Store {
    /// The embedded log in <data>/log (no set-up).
    Log,
    /// PostgreSQL (--database-url).
    Postgres,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the HTTP API.
    Serve {
        /// The data directory (the log, snapshots, the operator token).
        #[arg(long, default_value = "kedai-data")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where events live.
        #[arg(long, value_enum, default_value = "log")]
        store: Store,
        /// PostgreSQL URL for --store postgres (or KEDAI_DATABASE_URL).
        #[arg(long, env = "KEDAI_DATABASE_URL")]
        database_url: Option<String>,
        /// On first start, create a demo shop with realistic data and print
        /// its keys and a few commands to try.
        #[arg(long)]
        demo: bool,
        /// The WhatsApp-like HTTP gateway templated messages are POSTed to
        /// (http://...); without it they wait in the outbox.
        #[arg(long, env = "KEDAI_WHATSAPP_URL")]
        whatsapp_url: Option<String>,
        /// Sent to the gateway as `Authorization: Bearer <token>`.
        #[arg(long, env = "KEDAI_WHATSAPP_TOKEN", hide_env_values = true)]
        whatsapp_token: Option<String>,
        /// Run no webhook delivery worker (with several nodes on one
        /// PostgreSQL, run it on one).
        #[arg(long, env = "KEDAI_NO_WEBHOOKS")]
        no_webhooks: bool,
        /// Time to connect to a webhook receiver (e.g. 500ms, 5s).
        #[arg(long, env = "KEDAI_WEBHOOK_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
        webhook_connect_timeout: Duration,
        /// Time for a whole delivery attempt.
        #[arg(long, env = "KEDAI_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
        webhook_timeout: Duration,
        /// Wait after a first failed attempt (doubled after each).
        #[arg(long, env = "KEDAI_WEBHOOK_BACKOFF", default_value = "10s", value_parser = parse_duration)]
        webhook_backoff: Duration,
        /// Longest wait between attempts.
        #[arg(long, env = "KEDAI_WEBHOOK_BACKOFF_MAX", default_value = "1h", value_parser = parse_duration)]
        webhook_backoff_max: Duration,
        /// How long a failing delivery is retried before its subscription
        /// is disabled.
        #[arg(long, env = "KEDAI_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = parse_duration)]
        webhook_retry_for: Duration,
    },
    /// Write realistic fixture data (shops, orders, chats, money).
    Seed {
        #[arg(long, default_value = "kedai-data")]
        data: PathBuf,
        #[arg(long, default_value_t = 1)]
        shops: usize,
        /// Orders in all (spread over the shops).
        #[arg(long, default_value_t = 1_000)]
        orders: usize,
        #[arg(long, default_value_t = 1212)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEDAI_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Cmd::Serve {
                data,
                listen,
                store,
                database_url,
                demo,
                whatsapp_url,
                whatsapp_token,
                no_webhooks,
                webhook_connect_timeout,
                webhook_timeout,
                webhook_backoff,
                webhook_backoff_max,
                webhook_retry_for,
            } => {
                let store = match (store, database_url) {
                    (Store::Log, _) => StoreChoice::Log,
                    (Store::Postgres, Some(url)) => StoreChoice::Postgres(url),
                    (Store::Postgres, None) => anyhow::bail!(
                        "--store postgres needs --database-url (or KEDAI_DATABASE_URL)"
                    ),
                };
                let whatsapp = whatsapp_url.map(|url| WhatsappConfig {
                    token: whatsapp_token,
                    ..WhatsappConfig::new(url)
                });
                serve::serve(ServeConfig {
                    data,
                    listen,
                    store,
                    demo,
                    whatsapp,
                    webhooks: (!no_webhooks).then(|| WorkerConfig {
                        connect_timeout: webhook_connect_timeout,
                        request_timeout: webhook_timeout,
                        backoff_initial: webhook_backoff,
                        backoff_max: webhook_backoff_max,
                        retry_for: webhook_retry_for,
                        ..WorkerConfig::default()
                    }),
                })
                .await
            }
            Cmd::Seed {
                data,
                shops,
                orders,
                seed,
            } => {
                anyhow::ensure!(shops >= 1, "--shops must be at least 1");
                serve::seed(&data, shops, orders, seed).await
            }
        }
    })
}

/// A duration such as `250ms`, `5s`, `10m`, `1h` or `2d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }
}
