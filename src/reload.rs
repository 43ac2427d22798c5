//! Following files that may change while the service runs (certificates, the tokens file): a
//! callback when one of them changes — looked at every few seconds, by modification time and
//! size, so that cert managers' renames and Kubernetes' symlink swaps are seen — or on SIGHUP.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Calls `reload` with what triggered it (`"changed"` or `"SIGHUP"`) until `stop`.
pub async fn on_change(
    paths: &[PathBuf],
    every: Duration,
    stop: CancellationToken,
    mut reload: impl FnMut(&'static str),
) {
    let mut hangups = signal(SignalKind::hangup()).ok();
    let mut seen = stamps(paths);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(signals) => signals.recv().await,
                None => std::future::pending().await,
            }
        };
        let trigger = tokio::select! {
            _ = ticks.tick() => "changed",
            _ = hangup => "SIGHUP",
            () = stop.cancelled() => return,
        };
        let now = stamps(paths);
        if trigger == "changed" && now == seen {
            continue;
        }
        seen = now;
        reload(trigger);
    }
}

/// Each file's modification time and size (`None` while it cannot be read).
fn stamps(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}
