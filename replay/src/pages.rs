//! Reading the log in large pages, ahead of the consumer: a task reads the
//! next pages (10,000 events each, the most one read returns) while the
//! caller folds or writes the current one, so decoding and folding run on
//! two cores.

use std::sync::Arc;

use kedai_engine::store::READ_EVENTS_MAX;
use kedai_engine::{EventStore, Position, RecordedEvent, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pages read ahead of the consumer.
const PAGES_AHEAD: usize = 4;

/// The events at positions `after + 1 ..= until`, page by page.
#[derive(Debug)]
pub struct Pages {
    rx: mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>>,
    task: JoinHandle<()>,
}

impl Pages {
    /// Starts reading. Must be called within a Tokio runtime.
    pub fn spawn(store: Arc<dyn EventStore>, after: Position, until: Position) -> Pages {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        let task = tokio::spawn(async move {
            let mut after = after;
            while after < until {
                let want = (until - after).min(READ_EVENTS_MAX as u64) as usize;
                let page = match store.read_all(after, want).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                after = last.position;
                if tx.send(Ok(page)).await.is_err() {
                    return;
                }
            }
        });
        Pages { rx, task }
    }

    /// The next page; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Vec<RecordedEvent>, StoreError>> {
        self.rx.recv().await
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.task.abort();
    }
}
