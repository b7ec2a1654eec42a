//! Hot reload: `POST /admin/reload` and SIGHUP share this path: policies,
//! tenants, routes and `[limits]` rates. Validate first; on any problem the
//! old set keeps running and every problem is logged with its position.

use std::sync::Arc;

use crate::session::Gateway;

/// Reloads `gw`'s config file; `Ok` carries the new summary, `Err` one
/// line per problem.
pub fn run(gw: &Gateway) -> Result<String, Vec<String>> {
    match gw.policy.reload(&gw.config.source) {
        Ok((summary, config)) => {
            // Limits whose settings did not change keep their buckets.
            gw.limits.reload(&config.limits.rates);
            tracing::info!(summary = %summary, "policies and limits reloaded");
            Ok(summary)
        }
        Err(e) => {
            let lines = e.lines();
            for line in &lines {
                tracing::error!(problem = %line, "reload refused; the previous policies stay in force");
            }
            Err(lines)
        }
    }
}

/// Reloads on every SIGHUP until shutdown.
pub async fn on_sighup(gw: Arc<Gateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = gw.shutdown.cancelled() => return,
                s = hup.recv() => if s.is_none() { return },
            }
            let _ = run(&gw);
        }
    }
    #[cfg(not(unix))]
    let _ = gw;
}
