//! Test and bench support: a throwaway PostgreSQL server, and fresh
//! databases to test against. Not for production use.
//!
//! [`ThrowawayPostgres::start`] finds the server binaries (`pg_config
//! --bindir`, else the newest `/usr/lib/postgresql/*/bin`), runs `initdb`
//! into a new temporary directory (trust authentication, user
//! `postgres`), picks a free loopback port and starts the server with
//! `pg_ctl start`, which waits (at most [`READY_WAIT`]) until it accepts
//! connections. The server listens on 127.0.0.1 only, with no Unix socket.
//! Dropping the value stops the server (`pg_ctl stop -m immediate`) and
//! removes the directory. In case the process dies without dropping it, a
//! small watchdog shell process, in a process group of its own, does the
//! same once the process is gone.
//!
//! PostgreSQL refuses to run as root: when the process runs as root, the
//! directory is handed to the `postgres` user and every server command
//! runs through `runuser -u postgres --`.
//!
//! Tests call [`test_database`]: a new, empty database on the server named
//! by the environment variable [`TEST_DATABASE_URL_VAR`] when it is set
//! (`scripts/with-postgres.sh` starts one and sets it), else on a throwaway
//! server shared by the tests of the process that are running at the time.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use uuid::Uuid;

/// Environment variable naming a PostgreSQL server for tests, as a URL
/// such as `postgres://postgres@127.0.0.1:5432/postgres`. Each test creates
/// a database of its own on it.
pub const TEST_DATABASE_URL_VAR: &str = "KEDAI_TEST_DATABASE_URL";

/// Longest wait for a started server to accept connections.
pub const READY_WAIT: Duration = Duration::from_secs(30);

/// Ports tried before giving up (another process may take a free port
/// between our check and the server's bind).
const START_ATTEMPTS: usize = 5;

/// Connections the throwaway server accepts: each store holds a writer, a
/// listener and a read pool, and tests run several stores at once.
const MAX_CONNECTIONS: u32 = 400;

/// A PostgreSQL server in a temporary directory, stopped and removed on
/// drop.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    root: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    /// Run server commands as the `postgres` user (we are root).
    as_postgres: bool,
    /// 0 until the server runs.
    port: u16,
    /// Stops the server if this process dies without dropping us.
    watchdog: Option<Child>,
}

impl ThrowawayPostgres {
    /// Starts a server with PostgreSQL's default (durable) settings.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra settings, e.g. `[("fsync", "off")]`.
    /// Names and values are limited to letters, digits and `._-`.
    pub fn start_with(settings: &[(&str, &str)]) -> io::Result<Self> {
        for (name, value) in settings {
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            };
            if !plain(name) || !plain(value) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported server setting {name}={value}"),
                ));
            }
        }
        let bindir = find_bindir()?;
        let as_postgres = running_as_root()?;
        let root = std::env::temp_dir().join(format!("kedai-pg-{}", Uuid::now_v7().simple()));
        fs::create_dir(&root)?;
        let mut server = ThrowawayPostgres {
            data: root.join("data"),
            root,
            bindir,
            as_postgres,
            port: 0,
            watchdog: None,
        };
        // From here on, dropping `server` cleans up whatever was done, and
        // the watchdog does if this process dies first.
        server.watchdog = server.spawn_watchdog().ok();
        server.init()?;
        server.launch(settings)?;
        Ok(server)
    }

    /// URL of the server's `postgres` database, as superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> io::Result<String> {
        create_database(&self.url(), name).await
    }

    /// A server command, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn init(&mut self) -> io::Result<()> {
        if self.as_postgres {
            let uid = id_of("-u")?;
            let gid = id_of("-g")?;
            std::os::unix::fs::chown(&self.root, Some(uid), Some(gid))?;
        }
        let log = self.root.join("initdb.log");
        let status = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(self.root.join("initdb.err"))?)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "initdb failed ({status}): {}",
                tail(&self.root.join("initdb.err"))
            )));
        }
        Ok(())
    }

    fn launch(&mut self, settings: &[(&str, &str)]) -> io::Result<()> {
        let server_log = self.root.join("server.log");
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
                 -c max_connections={MAX_CONNECTIONS}"
            );
            for (name, value) in settings {
                options.push_str(&format!(" -c {name}={value}"));
            }
            let status = self
                .command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&server_log)
                .args([
                    "-w",
                    "-t",
                    &READY_WAIT.as_secs().to_string(),
                    "-o",
                    &options,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(self.root.join("pg_ctl.err"))?)
                .status()?;
            if status.success() {
                self.port = port;
                return Ok(());
            }
            let log = tail(&server_log);
            last_error = format!(
                "pg_ctl start failed ({status}): {} {log}",
                tail(&self.root.join("pg_ctl.err"))
            );
            // A server that did come up but was not ready in time must not
            // be left running.
            self.stop();
            if !log.contains("could not bind") && !log.contains("already in use") {
                break;
            }
        }
        Err(io::Error::other(last_error))
    }

    /// The command that stops the server at once.
    fn stop_command(&self) -> Command {
        let mut c = self.command("pg_ctl");
        c.arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn stop(&self) {
        if self.data.join("postmaster.pid").exists()
            && let Err(e) = self.stop_command().status()
        {
            tracing::warn!(error = %e, "could not stop the throwaway PostgreSQL server");
        }
    }

    /// A shell process that waits for this process to end, then stops the
    /// server and removes the directory. Killed when we clean up ourselves.
    fn spawn_watchdog(&self) -> io::Result<Child> {
        let stop = self.stop_command();
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
shift; root=$1; shift
"$@"; rm -rf "$root""#,
            )
            .arg("kedai-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.root)
            .arg(stop.get_program())
            .args(stop.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        c.spawn()
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        self.stop();
        if let Err(e) = fs::remove_dir_all(&self.root) {
            tracing::warn!(error = %e, dir = %self.root.display(), "could not remove the throwaway PostgreSQL directory");
        }
    }
}

/// Creates database `name` (lowercase letters, digits, `_`) on the server
/// at `server_url` and returns the new database's URL.
pub async fn create_database(server_url: &str, name: &str) -> io::Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsupported database name {name:?}"),
        ));
    }
    let url = database_url(server_url, name)?;
    let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| io::Error::other(format!("connecting to the test server: {e}")))?;
    let driver = tokio::spawn(connection);
    let created = client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| io::Error::other(format!("creating database {name}: {e}")));
    drop(client);
    let _ = driver.await;
    created.map(|()| url)
}

/// `server_url` (a `postgres://` or `postgresql://` URL) with its database
/// replaced by `name`.
pub fn database_url(server_url: &str, name: &str) -> io::Result<String> {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server_url, None),
    };
    let Some(authority) = base
        .strip_prefix("postgres://")
        .or_else(|| base.strip_prefix("postgresql://"))
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the test server must be given as a postgres:// URL",
        ));
    };
    let scheme_len = base.len() - authority.len();
    let authority_len = authority.find('/').unwrap_or(authority.len());
    let mut url = format!("{}/{name}", &base[..scheme_len + authority_len]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// A fresh database for one test. Keeps the shared throwaway server (if
/// one is used) running while it lives.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    _server: Option<Arc<ThrowawayPostgres>>,
}

/// The throwaway server the running tests share, while any of them holds
/// it.
static SHARED_SERVER: Mutex<Weak<ThrowawayPostgres>> = Mutex::new(Weak::new());

/// A new, empty database: on the server named by [`TEST_DATABASE_URL_VAR`]
/// if set, else on a throwaway server started for this process.
pub async fn test_database() -> io::Result<TestDatabase> {
    let name = format!("kedai_test_{}", Uuid::now_v7().simple());
    if let Ok(server_url) = std::env::var(TEST_DATABASE_URL_VAR)
        && !server_url.is_empty()
    {
        let url = create_database(&server_url, &name).await?;
        return Ok(TestDatabase { url, _server: None });
    }
    let server = tokio::task::spawn_blocking(shared_server)
        .await
        .map_err(io::Error::other)??;
    let url = server.create_database(&name).await?;
    Ok(TestDatabase {
        url,
        _server: Some(server),
    })
}

fn shared_server() -> io::Result<Arc<ThrowawayPostgres>> {
    let mut slot = SHARED_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = slot.upgrade() {
        return Ok(server);
    }
    let server = Arc::new(ThrowawayPostgres::start()?);
    *slot = Arc::downgrade(&server);
    Ok(server)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> io::Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if complete(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin): install the PostgreSQL server",
        )
    })
}

/// Whether the effective user is root.
fn running_as_root() -> io::Result<bool> {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(uids) = status.lines().find_map(|l| l.strip_prefix("Uid:"))
        && let Some(effective) = uids.split_whitespace().nth(1)
    {
        return Ok(effective == "0");
    }
    let out = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn id_of(which: &str) -> io::Result<u32> {
    let out = Command::new("id").args([which, "postgres"]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "running as root needs a postgres user to run the server as",
            )
        })
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    const TAIL_BYTES: u64 = 2_000;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_replace_only_the_database() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/kedai_t",
            ),
            (
                "postgresql://u:p@db:5433",
                "postgresql://u:p@db:5433/kedai_t",
            ),
            (
                "postgres://u@db/main?connect_timeout=5",
                "postgres://u@db/kedai_t?connect_timeout=5",
            ),
        ];
        for (server, want) in cases {
            assert_eq!(database_url(server, "kedai_t").unwrap(), want);
        }
        assert!(database_url("host=db user=u", "kedai_t").is_err());
    }
}
