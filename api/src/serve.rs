//! `kedai serve` and `kedai seed`: opening the store, the projections
//! (from their snapshot, then the rest of the log), the runner that keeps
//! them current, the workers (the abandonment scheduler, and the message
//! sender when a gateway is configured), the listener (at most
//! `CONNECTIONS_MAX` connections), the demo shop, and the graceful
//! shutdown (stop accepting, finish what is in flight, stop the workers,
//! write a last snapshot, close the store, exit 0).
//!
//! The data directory holds `log/` (the embedded store),
//! `projections.snapshot`, `webhooks.checkpoint` (the webhook worker's),
//! `operator-token` and, after `--demo`, `demo-keys.txt` (both mode 0600).
//!
//! The webhook delivery worker runs beside the API on both stores; it
//! stops after the listener (its attempts in flight are abandoned and
//! repeated after the next start) and before the projection runner.

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use kedai_engine::clock::{Clock, SystemClock};
use kedai_engine::command::{Command, CommandMeta, Engine, EngineOptions};
use kedai_engine::domain::access::IssueKey;
use kedai_engine::store::import::Verbatim;
use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::store::postgres::{PgOptions, PgStore};
use kedai_engine::{Actor, EventStore, Position, Role, ShopId};
use kedai_fixtures::FixtureConfig;
use kedai_projections::Projections;
use kedai_projections::fold::fold_store;
use kedai_projections::runner::{ProjectionHandle, Runner, SnapshotPolicy, load_snapshot};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::{hash_secret, new_secret};
use crate::limits::{CONNECTIONS_MAX, SHUTDOWN_GRACE};
use crate::state::AppState;
use crate::workers::abandonment::Scheduler;
use crate::workers::outbox::{MessageSender, Outbox, RetryPolicy};
use crate::workers::whatsapp::{WhatsappConfig, WhatsappSender};

/// Where events live.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// The embedded log in `<data>/log`.
    Log,
    /// The embedded log with other options (tests: no preallocated
    /// segments, which makes opening a new log cheap).
    LogWith(LogOptions),
    /// PostgreSQL at this URL.
    Postgres(String),
}

/// What `kedai serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub store: StoreChoice,
    pub demo: bool,
    /// The webhook delivery worker's settings; `None` runs no worker (on
    /// PostgreSQL with several nodes, one node is enough).
    pub webhooks: Option<crate::webhooks::WorkerConfig>,
    /// The WhatsApp-like gateway queued messages are sent to; without one
    /// they wait in the outbox.
    pub whatsapp: Option<WhatsappConfig>,
}

/// What runs beside the API, and the time it runs on.
#[derive(Debug, Clone)]
pub struct Workers {
    pub clock: Arc<dyn Clock>,
    /// The sender of queued messages, if any.
    pub sender: Option<Arc<dyn MessageSender>>,
    pub retry: RetryPolicy,
}

impl Workers {
    /// On the system clock, with `sender`.
    pub fn system(sender: Option<Arc<dyn MessageSender>>) -> Self {
        Workers {
            clock: Arc::new(SystemClock),
            sender,
            retry: RetryPolicy::default(),
        }
    }
}

/// A running kedai: the state handlers share, and what to stop on the way
/// out.
pub struct Running {
    pub state: AppState,
    pub projections: ProjectionHandle,
    stop: watch::Sender<bool>,
    runner: tokio::task::JoinHandle<Result<(), kedai_projections::runner::RunError>>,
    stop_workers: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Running {
    /// Starts the workers: the abandonment scheduler, and the message
    /// sender if there is one.
    pub fn spawn_workers(&mut self, workers: Workers) {
        let stop = self.stop_workers.subscribe();
        let scheduler = Scheduler::new(
            Arc::clone(&self.state.engine),
            self.projections.clone(),
            Arc::clone(&workers.clock),
        );
        self.workers.push(tokio::spawn(scheduler.run(stop.clone())));
        match workers.sender {
            Some(sender) => {
                let outbox = Outbox::new(
                    Arc::clone(&self.state.engine),
                    self.projections.clone(),
                    Arc::clone(&workers.clock),
                    sender,
                    workers.retry,
                );
                self.workers.push(tokio::spawn(outbox.run(stop)));
            }
            None => {
                let queued = self.projections.read(|p| {
                    p.shops
                        .values()
                        .map(|v| v.inbox.outbox_len())
                        .sum::<usize>()
                });
                tracing::info!(
                    queued,
                    "no message gateway configured (--whatsapp-url): templated messages wait in the outbox"
                );
            }
        }
    }

    /// Stops the workers (messages in flight finish their attempt), then
    /// the runner (it writes a last snapshot), and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_workers.send_replace(true);
        for worker in self.workers {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "a worker panicked");
            }
        }
        self.stop.send_replace(true);
        self.runner
            .await
            .context("the projection runner panicked")??;
        Ok(())
    }
}

/// Opens the store and the projections, starts the runner, and starts the
/// workers: the abandonment scheduler, and the message sender if there is
/// one.
pub async fn start_with_workers(
    data: &Path,
    store: &StoreChoice,
    workers: Workers,
) -> anyhow::Result<Running> {
    let mut running = open(data, store, Arc::clone(&workers.clock)).await?;
    running.spawn_workers(workers);
    Ok(running)
}

/// Opens the store and the projections, and starts the runner (no
/// workers: for `kedai seed` and tools).
pub async fn start(data: &Path, store: &StoreChoice) -> anyhow::Result<Running> {
    open(data, store, Arc::new(SystemClock)).await
}

async fn open(data: &Path, store: &StoreChoice, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    // The projections' snapshot is read while the store opens: the two
    // share nothing, and each takes about as long.
    let snapshot_path = data.join("projections.snapshot");
    let snapshot = {
        let path = snapshot_path.clone();
        tokio::task::spawn_blocking(move || load_snapshot(&path))
    };
    let (records, sole_writer): (Arc<dyn Verbatim>, bool) = match store {
        StoreChoice::Log | StoreChoice::LogWith(_) => {
            let options = match store {
                StoreChoice::LogWith(o) => o.clone(),
                _ => LogOptions::default(),
            };
            let log = LogStore::open_with(data.join("log"), options).with_context(|| {
                format!("opening the event log in {}", data.join("log").display())
            })?;
            (Arc::new(log), true)
        }
        StoreChoice::Postgres(url) => (
            Arc::new(
                PgStore::connect(url, PgOptions::default())
                    .await
                    .context("connecting to PostgreSQL")?,
            ),
            false,
        ),
    };
    let store: Arc<dyn EventStore> = Arc::clone(&records) as Arc<dyn EventStore>;
    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        EngineOptions {
            sole_writer,
            ..EngineOptions::default()
        },
    ));
    let head = store.last_position().await?;
    let snapshot = snapshot.await.context("reading the projection snapshot")?;
    let initial = match snapshot {
        Ok(Some(p)) if p.position <= head => {
            tracing::info!(
                position = p.position,
                head,
                "projections from their snapshot, then the rest of the log"
            );
            p
        }
        Ok(Some(p)) => {
            tracing::warn!(
                snapshot = p.position,
                head,
                "the snapshot is ahead of the store; rebuilding from the start"
            );
            Projections::new()
        }
        Ok(None) => Projections::new(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the projection snapshot; rebuilding from the start");
            Projections::new()
        }
    };
    let initial = if initial.position == 0 && head > 0 {
        from_the_start(records, head).await?
    } else {
        initial
    };
    let policy = SnapshotPolicy {
        path: snapshot_path,
        every_events: 200_000,
        every: Duration::from_secs(60),
    };
    let (runner, projections) = Runner::new(Arc::clone(&store), initial, Some(policy));
    let (stop, stop_rx) = watch::channel(false);
    let runner = tokio::spawn(runner.run(stop_rx));
    let token = operator_token(data)?;
    let state = AppState::with_clock(engine, projections.clone(), &token, clock);
    Ok(Running {
        state,
        projections,
        stop,
        runner,
        stop_workers: watch::channel(false).0,
        workers: Vec::new(),
    })
}

/// The projections of the log up to `head`, folded on every core (a
/// start without a usable snapshot); the runner follows on from there.
async fn from_the_start(records: Arc<dyn Verbatim>, head: Position) -> anyhow::Result<Projections> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    tracing::info!(
        head,
        threads,
        "folding the projections from the start of the log"
    );
    let folded = fold_store(records, head, threads, None, |_, _| {})
        .await
        .context("folding the projections from the start of the log")?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        position = folded.projections.position,
        seconds,
        events_per_second = (head as f64 / seconds.max(1e-9)).round(),
        "projections folded"
    );
    Ok(folded.projections)
}

/// The operator token: `KEDAI_OPERATOR_TOKEN`, else the one in the data
/// directory, else a new one written there (mode 0600).
fn operator_token(data: &Path) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("KEDAI_OPERATOR_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_owned());
    }
    let path = data.join("operator-token");
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let token = new_secret().replace("kedai_sk_", "kedai_op_");
    write_private(&path, &format!("{token}\n"))?;
    tracing::info!(path = %path.display(), "wrote a new operator token");
    Ok(token)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Serves until SIGTERM or ctrl-c.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let sender: Option<Arc<dyn MessageSender>> = match &config.whatsapp {
        Some(c) => Some(Arc::new(WhatsappSender::new(c)?)),
        None => None,
    };
    let mut running = start(&config.data, &config.store).await?;
    if config.demo {
        demo(&config, &running).await?;
    }
    // After the demo: the generator plays checkouts at its own times.
    running.spawn_workers(Workers::system(sender));
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %config.data.display(), "kedai is serving");
    eprintln!(
        "kedai is serving on http://{addr} (data in {})",
        config.data.display()
    );
    let worker = match config.webhooks.clone() {
        Some(mut w) => {
            w.checkpoint_path = Some(config.data.join("webhooks.checkpoint"));
            Some(crate::webhooks::Worker::start(
                Arc::clone(&running.state.store),
                Arc::clone(&running.state.engine),
                w,
            )?)
        }
        None => None,
    };
    let app = crate::router(running.state.clone());
    let (closing_tx, mut closing) = watch::channel(false);
    let server = axum::serve(Limited::new(listener, CONNECTIONS_MAX), app).with_graceful_shutdown(
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            closing_tx.send_replace(true);
        },
    );
    let server = tokio::spawn(async move { server.await });
    // Bound the graceful phase: once the signal came, in-flight requests
    // get `SHUTDOWN_GRACE` to finish.
    let _ = closing.wait_for(|c| *c).await;
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result
            .context("the server task failed")?
            .context("serving")?,
        Err(_) => tracing::warn!("requests still in flight after the grace period; closing anyway"),
    }
    if let Some(worker) = worker {
        worker.stop().await.context("the webhook worker")?;
    }
    running.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// On first start, fills the store with a demo shop and writes its keys;
/// on later starts, prints them again.
async fn demo(config: &ServeConfig, running: &Running) -> anyhow::Result<()> {
    let keys = config.data.join("demo-keys.txt");
    if let Ok(text) = fs::read_to_string(&keys) {
        eprintln!(
            "\nThe demo shop exists already. Its keys (from {}):\n{text}",
            keys.display()
        );
        return Ok(());
    }
    let engine = &running.state.engine;
    if engine.store().last_position().await? > 0 {
        anyhow::bail!(
            "--demo wants an empty data directory the first time, and {} already holds events; use another --data",
            config.data.display()
        );
    }
    eprintln!("Creating the demo shop (a few hundred orders, chats, money)...");
    let summary = kedai_fixtures::generate(engine, &FixtureConfig::demo(), &mut |_| {})
        .await
        .context("generating the demo shop")?;
    let shop = summary
        .shops
        .first()
        .context("the demo config makes a shop")?;
    let mut text = format!("shop: {} ({})\n", shop.name, shop.shop_id);
    for role in [Role::Owner, Role::Staff, Role::Analyst, Role::Auditor] {
        let secret = issue_key(engine, shop.shop_id, role).await?;
        text.push_str(&format!("{role} key: {secret}\n"));
    }
    write_private(&keys, &text)?;
    let owner = text
        .lines()
        .nth(1)
        .and_then(|l| l.split(": ").nth(1))
        .unwrap_or_default()
        .to_owned();
    let base = format!("http://{}", config.listen);
    eprintln!(
        "\nThe demo shop is ready. Keys (also in {}):\n{text}",
        keys.display()
    );
    eprintln!("Try:\n  export KEY={owner}");
    for (what, path) in [
        ("the shop", "/v1/shop"),
        ("orders, newest first", "/v1/orders?limit=5"),
        ("orders per status", "/v1/orders/counts"),
        ("the balance", "/v1/balance"),
        ("low stock", "/v1/stock/low"),
        (
            "sales by day",
            "/v1/analytics/sales?from=2025-11-25&to=2025-12-15",
        ),
        ("the chat inbox", "/v1/conversations?limit=5"),
    ] {
        eprintln!("  # {what}\n  curl -s -H \"Authorization: Bearer $KEY\" \"{base}{path}\"");
    }
    eprintln!();
    Ok(())
}

/// Issues a key for a shop (as the operator) and returns its secret.
pub async fn issue_key(engine: &Engine, shop: ShopId, role: Role) -> anyhow::Result<String> {
    let secret = new_secret();
    let command = Command::IssueKey(IssueKey {
        key_id: uuid::Uuid::now_v7(),
        role,
        label: format!("{role} (demo)"),
        hash: hash_secret(&secret),
    });
    engine
        .execute(
            shop,
            &CommandMeta::new(Actor::new(Role::Operator, "operator")),
            &command,
        )
        .await
        .context("issuing a demo key")?;
    Ok(secret)
}

/// `kedai seed`: writes fixture data into a data directory.
pub async fn seed(data: &Path, shops: usize, orders: usize, seed: u64) -> anyhow::Result<()> {
    let running = start(data, &StoreChoice::Log).await?;
    let config = FixtureConfig {
        shops,
        orders_per_shop: orders.div_ceil(shops.max(1)),
        seed,
        ..FixtureConfig::default()
    };
    let bar = indicatif::ProgressBar::new((config.shops * config.orders_per_shop) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} orders, {msg} [{elapsed_precise}, {eta} left]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let summary = kedai_fixtures::generate(&running.state.engine, &config, &mut |p| {
        bar.set_position(p.done);
        bar.set_message(format!("{} events", p.events));
    })
    .await
    .context("generating fixture data")?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} shops, {} orders, {} events in {:.1} s ({:.0} events/s) into {}",
        summary.shops.len(),
        summary.totals.orders_placed(),
        summary.events,
        secs,
        summary.events as f64 / secs,
        data.display()
    );
    for shop in &summary.shops {
        eprintln!(
            "  {} {} ({})",
            shop.shop_id,
            shop.name,
            shop.currency.code()
        );
    }
    running.stop().await
}

/// A listener that serves at most `max` connections at once: accepting
/// waits for a free slot, and a connection frees its slot when it closes.
#[derive(Debug)]
pub struct Limited {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

impl Limited {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Limited {
            inner,
            slots: Arc::new(Semaphore::new(max)),
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = SlotStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        SlotStream {
                            stream,
                            _slot: slot,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, retry.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot.
#[derive(Debug)]
pub struct SlotStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for SlotStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlotStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
