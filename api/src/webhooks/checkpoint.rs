//! The worker's checkpoint: a small JSON file (written atomically: a
//! temporary file, fsync, rename) with the dispatcher's position and, per
//! subscription, the position through which nothing is owed and the
//! attempts of the delivery being retried. No secrets: those are read
//! from the log.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use kedai_engine::event::Position;
use kedai_engine::{ShopId, Timestamp};
use serde::{Deserialize, Serialize};

/// The attempts so far of the delivery a lane is retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub position: Position,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub shop: ShopId,
    pub webhook_id: uuid::Uuid,
    /// Every matching event at or before this position was delivered (or
    /// dropped by a disable).
    pub done: Position,
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// The dispatcher folded every event up to here.
    pub position: Position,
    pub subscriptions: Vec<Entry>,
}

impl Checkpoint {
    pub const VERSION: u32 = 1;
}

/// The checkpoint at `path`, `None` if there is none or it is unreadable
/// (a warning: the worker then folds the log from the beginning).
pub fn load(path: &Path) -> Option<Checkpoint> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the webhook checkpoint; folding the log from the start");
            return None;
        }
    };
    match serde_json::from_slice::<Checkpoint>(&text) {
        Ok(c) if c.version == Checkpoint::VERSION => Some(c),
        Ok(c) => {
            tracing::warn!(
                version = c.version,
                "unknown webhook checkpoint version; folding the log from the start"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "damaged webhook checkpoint; folding the log from the start");
            None
        }
    }
}

/// Writes the checkpoint atomically.
pub fn save(path: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(checkpoint).map_err(io::Error::other)?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks.checkpoint");
        assert_eq!(load(&path), None);
        let c = Checkpoint {
            version: Checkpoint::VERSION,
            position: 42,
            subscriptions: vec![Entry {
                shop: ShopId(uuid::Uuid::from_u128(1)),
                webhook_id: uuid::Uuid::from_u128(2),
                done: 40,
                pending: Some(Pending {
                    position: 41,
                    attempts: 3,
                    first_failed_at: Timestamp(7),
                }),
            }],
        };
        save(&path, &c).unwrap();
        assert_eq!(load(&path), Some(c));
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path), None);
    }
}
