//! The real `kedai` binary as a child process: `kedai serve` on a free
//! loopback port (the address it prints is read from its log), stopped
//! with `kill -9` or SIGTERM, and never left behind by a failing test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a start or a graceful stop may take.
const WAIT: Duration = Duration::from_secs(60);

/// A running `kedai serve`.
pub struct Kedai {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Shown before each line of its log.
    pub name: &'static str,
}

impl Drop for Kedai {
    /// A failing test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kedai {
    /// Starts `kedai serve --listen 127.0.0.1:0 --data DATA ARGS...` with
    /// the operator token and `env`, and waits until it says where it
    /// serves. Its log goes to this test's stderr (shown if it fails).
    pub fn spawn(
        name: &'static str,
        operator: &str,
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Kedai {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kedai"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .env("KEDAI_OPERATOR_TOKEN", operator)
            .env("KEDAI_LOG", "warn")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kedai");
        let stderr = child.stderr.take().expect("kedai's stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("kedai {name}: {line}");
                if let Some(rest) = line.split("serving on ").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let base = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("kedai {name} said where it serves"));
        Kedai { child, base, name }
    }

    /// `kill -9`: no graceful anything.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then its exit status (it must stop within a minute).
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kedai {} did not stop after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
