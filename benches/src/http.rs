//! The HTTP side of the harness: the real `kedai serve` as a child process
//! on a fresh data directory, keep-alive client connections (hyper's
//! HTTP/1.1 client, one request in flight per connection), latency
//! percentiles, and CPU time of the server and of this process (the load
//! client shares the machine's cores with the server).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// The operator token the bench servers run with.
pub const OPERATOR_TOKEN: &str = "bench-operator-token";

/// How long a server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `kedai` binary built next to this one (same target directory and
/// profile), or `explicit`.
pub fn kedai_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .join("kedai"),
    };
    anyhow::ensure!(
        path.exists(),
        "no kedai binary at {}: build it first (cargo build --release -p kedai-api --bin kedai) or pass --kedai",
        path.display()
    );
    Ok(path)
}

/// A `kedai serve` child process; stopped (SIGTERM, then killed) on drop.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `kedai serve --listen 127.0.0.1:0 --data <data>` and waits
    /// until it says where it serves. `log` is its `KEDAI_LOG` filter.
    pub fn start(binary: &Path, data: &Path, log: &str) -> anyhow::Result<Server> {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("KEDAI_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("KEDAI_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the server's stderr to its end (so it never blocks on a
        // full pipe), passes on the address and echoes warnings.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("server: {line}");
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let addr = rx
            .recv_timeout(START_TIMEOUT)
            .context("kedai did not say where it serves")?;
        server.addr = addr.parse().context("the address kedai printed")?;
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// CPU seconds (user + system, all threads) the server used so far.
    pub fn cpu_seconds(&self) -> f64 {
        crate::process_cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    /// Stops the server gracefully (SIGTERM) and checks it exits 0.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("stopped twice")?;
        terminate(&mut child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "kedai exited with {status}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    anyhow::bail!("kedai did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed")
}

/// CPU seconds this process (the load client) used so far.
pub fn own_cpu_seconds() -> f64 {
    crate::process_cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// CPU seconds used by the server and the client over some stretch.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    server: f64,
    client: f64,
    started: Instant,
}

/// What a [`CpuMeter`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server_seconds: f64,
    pub client_seconds: f64,
    pub wall_seconds: f64,
}

impl CpuUse {
    /// The client's share of the CPU time both used.
    pub fn client_share(&self) -> f64 {
        self.client_seconds / (self.client_seconds + self.server_seconds).max(1e-9)
    }

    /// Server and client CPU microseconds per request, for `requests`
    /// answered in the metered stretch.
    pub fn micros_per_request(&self, requests: u64) -> (f64, f64) {
        let n = requests.max(1) as f64;
        (self.server_seconds * 1e6 / n, self.client_seconds * 1e6 / n)
    }

    /// Cores busy on average (server and client together).
    pub fn cores_busy(&self) -> f64 {
        (self.client_seconds + self.server_seconds) / self.wall_seconds.max(1e-9)
    }
}

impl CpuMeter {
    pub fn start(server: &Server) -> CpuMeter {
        CpuMeter {
            server: server.cpu_seconds(),
            client: own_cpu_seconds(),
            started: Instant::now(),
        }
    }

    pub fn stop(&self, server: &Server) -> CpuUse {
        CpuUse {
            server_seconds: server.cpu_seconds() - self.server,
            client_seconds: own_cpu_seconds() - self.client,
            wall_seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// One keep-alive HTTP/1.1 connection to the server, with a key.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Body>,
    host: String,
    authorization: String,
}

/// An answer: status and body bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Conn {
    /// Opens a connection (TCP_NODELAY, as a real client would set).
    pub async fn open(addr: SocketAddr, key: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            // Ends when the connection closes (either side).
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            host: addr.to_string(),
            authorization: format!("Bearer {key}"),
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        self.send(method, path, body, None).await
    }

    /// Sends a command with an `Idempotency-Key`.
    pub async fn call_with_key(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: &str,
    ) -> anyhow::Result<Answer> {
        self.send(method, path, body, Some(idempotency_key)).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::AUTHORIZATION, &self.authorization);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let body: Body = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(b).boxed()
            }
            None => Empty::new().boxed(),
        };
        let req = req.body(body)?;
        self.sender.ready().await.context("connection closed")?;
        let res = self.sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// POSTs JSON and insists on success; returns the answer's JSON.
    pub async fn post_ok(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let answer = self
            .call(Method::POST, path, Some(Bytes::from(body.to_string())))
            .await?;
        anyhow::ensure!(
            answer.status.is_success(),
            "POST {path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        Ok(answer.json())
    }

    /// GETs JSON and insists on success.
    pub async fn get_ok(&mut self, path: &str) -> anyhow::Result<Value> {
        let answer = self.call(Method::GET, path, None).await?;
        anyhow::ensure!(
            answer.status.is_success(),
            "GET {path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        Ok(answer.json())
    }
}

/// Latencies in nanoseconds, for percentiles (by nearest rank).
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    pub fn record(&mut self, took: Duration) {
        self.0
            .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q` quantile (0..=1), by nearest rank; `None` if none was
    /// recorded.
    pub fn quantile(&mut self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        Some(Duration::from_nanos(self.0[rank - 1]))
    }

    /// The `q` quantile in milliseconds (NaN if none was recorded).
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        self.quantile(q)
            .map_or(f64::NAN, |d| d.as_nanos() as f64 / 1e6)
    }

    /// The largest.
    pub fn max(&self) -> Option<Duration> {
        self.0.iter().max().map(|n| Duration::from_nanos(*n))
    }

    /// The largest, in milliseconds (NaN if none was recorded).
    pub fn max_ms(&self) -> f64 {
        self.max().map_or(f64::NAN, |d| d.as_nanos() as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.quantile_ms(0.5), 0.5);
        assert_eq!(l.quantile_ms(0.99), 0.99);
        assert_eq!(l.quantile_ms(0.999), 0.999);
        assert_eq!(l.max_ms(), 1.0);
        // Below a microsecond (in-process queries) nothing is rounded away.
        let mut fast = Latencies::default();
        fast.record(Duration::from_nanos(300));
        fast.record(Duration::from_nanos(900));
        assert_eq!(fast.quantile(0.5), Some(Duration::from_nanos(300)));
        assert_eq!(fast.max(), Some(Duration::from_nanos(900)));
        assert_eq!(Latencies::default().quantile(0.5), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = crate::process_cpu_seconds(std::process::id()).expect("readable");
        // Busy work until the clock (in 1/100 s ticks) moves, at most 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while own_cpu_seconds() <= before {
            assert!(Instant::now() < deadline, "CPU time never grew");
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
        }
        std::hint::black_box(x);
    }
}
