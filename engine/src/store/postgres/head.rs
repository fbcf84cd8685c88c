//! Following the log head of a database other nodes also write to.
//!
//! Two tasks move the store's head watch forward (it never moves back):
//! - the listener holds a connection that `LISTEN`s on
//!   [`NOTIFY_CHANNEL`](super::NOTIFY_CHANNEL); every append batch sends a
//!   notification with its last position from inside its transaction, so
//!   it is delivered once that position is committed and visible. After
//!   (re)connecting, the listener reads the head row once, to cover what
//!   was committed while it was not listening. A broken connection is
//!   retried every poll interval.
//! - the poller reads the head row every poll interval, in case a
//!   notification is lost (or `LISTEN` is not allowed, as on a standby).
//!
//! A store's own commits also move the watch, directly from its writer.

use std::sync::Arc;

use tokio::task::AbortHandle;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::{NOTIFY_CHANNEL, PgOptions, Shared, db_error, describe, rows};
use crate::event::Position;
use crate::store::StoreError;

/// Starts the followers; abort the handles to stop them.
pub(super) fn spawn(shared: Arc<Shared>, config: Config, options: &PgOptions) -> Vec<AbortHandle> {
    let interval = options.poll_interval;
    let mut tasks = Vec::new();
    if options.listen {
        let shared = Arc::clone(&shared);
        tasks.push(
            tokio::spawn(async move {
                loop {
                    if let Err(e) = listen(&shared, &config).await {
                        tracing::warn!(error = %e, "not listening for appends; polling until reconnected");
                    }
                    tokio::time::sleep(interval).await;
                }
            })
            .abort_handle(),
        );
    }
    tasks.push(
        tokio::spawn(async move {
            // The head was read on connecting: the first poll is one
            // interval later.
            let first = tokio::time::Instant::now() + interval;
            let mut tick = tokio::time::interval_at(first, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match shared.read_head().await {
                    Ok(position) => shared.advance(position),
                    Err(e) => tracing::warn!(error = %e, "polling the log head failed"),
                }
            }
        })
        .abort_handle(),
    );
    tasks
}

/// Listens until the connection ends or fails.
async fn listen(shared: &Shared, config: &Config) -> Result<(), StoreError> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| db_error("connecting to listen", &e))?;
    // The connection must be polled for the client's requests to progress;
    // its messages are the notifications.
    let notifications = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => match n.payload().parse::<Position>() {
                    Ok(position) => shared.advance(position),
                    Err(_) => tracing::warn!(payload = n.payload(), "unexpected notification"),
                },
                Ok(_) => {}
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "PostgreSQL listening connection: {}",
                        describe(&e)
                    )));
                }
            }
        }
        Ok(())
    };
    let subscribe = async {
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await
            .map_err(|e| db_error("listening for appends", &e))?;
        shared.advance(rows::read_head_position(&client).await?);
        std::future::pending::<Result<(), StoreError>>().await
    };
    tokio::select! {
        ended = notifications => ended,
        failed = subscribe => failed,
    }
}
