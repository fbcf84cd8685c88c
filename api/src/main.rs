//! The `kedai` binary: `kedai serve` runs the HTTP API on the embedded log
//! (or PostgreSQL); `kedai seed` writes realistic fixture data.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kedai_api::serve::{self, ServeConfig, StoreChoice};
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
