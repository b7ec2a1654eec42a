//! Ends sessions whose credentials stop being valid, so their streams and
//! connections close (every front door watches `Session::closed_token`):
//! at once when a revocation is added, and on a short tick for expiry.
//!
//! A revoked credential ends its session on every transport. An expired one
//! ends connection-bound sessions (legacy SSE, WebSocket: their credential
//! cannot be renewed); a Streamable HTTP session outlives its token, since
//! the client may come back with a refreshed one (its GET stream ends when
//! the token that opened it expires, and every request is authenticated).

use std::sync::Arc;
use std::time::Duration;

use super::AuthError;
use crate::session::Gateway;

/// How often expiry is checked: sessions end at most this late.
const TICK: Duration = Duration::from_millis(250);

/// Runs until shutdown; does nothing when authentication is off.
pub async fn run(gw: Arc<Gateway>) {
    if !gw.auth.enabled() {
        return;
    }
    let mut changes = gw.auth.revocations.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        let ended =
            gw.end_sessions_where(|session| match gw.auth.still_valid(&session.principal) {
                Ok(()) => false,
                Err(AuthError::Expired { .. }) => session.transport != "streamable_http",
                // Unknown, not revoked: its next message is refused, and it
                // resumes when the state store returns.
                Err(AuthError::StateUnavailable) => false,
                Err(e) => {
                    tracing::info!(
                        session.id = %session.id,
                        sub = %session.principal.sub,
                        reason = %e,
                        "ending a session: its credentials are no longer valid"
                    );
                    true
                }
            });
        if ended > 0 {
            tracing::debug!(ended, "sessions ended by the credential watcher");
        }
    }
}
