//! Sessions across replicas (`[state]` with `session_key_env`): what a
//! replica does with a sealed session id it does not hold.
//!
//! A Streamable HTTP session whose backends are all Streamable HTTP is
//! *adoptable*: its sealed ticket names every backend session (the backend's
//! `Mcp-Session-Id` is just a header), so any replica builds a local copy
//! that continues those backend sessions without a handshake. To make that
//! possible the owner connects every backend at `initialize`, before it
//! seals the id. Any other session (a stdio process, an SSE or WebSocket
//! backend, all bound to the replica that opened them) is *forwarded* to
//! its owner, found in the replica registry; an owner that is gone means
//! 404, so the client initializes again and never reaches another user's
//! process.
//!
//! Costs: a locally held session costs nothing extra (a map hit, no
//! decryption, no Redis); a session seen for the first time on a replica
//! costs one Redis pipeline (is it ended, where is its owner).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{ClientFacts, Gateway, Session, SessionError};
use crate::auth::Principal;
use crate::backend::{BackendError, Connection, ServerFacts};
use crate::mcp::Era;
use crate::mcp::envelope::to_raw;
use crate::router::Route;
use crate::state::seal::{self, Ticket};

/// Set on a request one replica forwards to another: it is never
/// forwarded again.
pub const FORWARDED_HEADER: &str = "x-mcp-gateway-forwarded";

/// Where a request of a handshake-era session is served.
pub enum Resolved {
    /// Held here (opened here, or adopted just now).
    Local(Arc<Session>),
    /// Owned by another replica, alive at this address.
    Forward { owner: String, addr: String },
}

impl Gateway {
    /// Whether sessions opened through Streamable HTTP carry a ticket.
    pub(super) fn tickets(&self, transport: &str) -> bool {
        self.sealer.is_some() && self.state.is_some() && transport == "streamable_http"
    }

    /// The session for `id`: held here, adopted from its sealed ticket, or
    /// to be forwarded to its owner. `route` is the one the request came
    /// in on (an adopted session must have been opened on the same);
    /// `forwarded` says another replica already forwarded the request.
    pub async fn resolve(
        self: &Arc<Self>,
        id: &str,
        principal: &Principal,
        route: Option<&Route>,
        forwarded: bool,
    ) -> Result<Resolved, SessionError> {
        match self.session(id, principal) {
            Ok(session) => return Ok(Resolved::Local(session)),
            Err(SessionError::NotFound) if self.held(id) => return Err(SessionError::NotFound),
            Err(_) => {}
        }
        let (Some(sealer), Some(state)) = (&self.sealer, &self.state) else {
            return Err(SessionError::NotFound);
        };
        // Another principal's, forged, or ticketless (owner-only): unknown.
        let Ok(Some(ticket)) = sealer.open(id, principal) else {
            return Err(SessionError::NotFound);
        };
        // Its owner does not hold it: it ended here, or this replica
        // restarted (with a stable `replica_id`) and lost its processes.
        // An adoptable session needs no owner: adopted again below.
        if ticket.owner == state.replica_id() && !ticket.adoptable {
            return Err(SessionError::NotFound);
        }
        let digest = seal::digest(id);
        let facts = match state.session_facts(&digest, &ticket.owner).await {
            Ok(facts) => facts,
            // `on_unavailable = "local"`: this replica's view, which does
            // not know of deletions; an adoptable session is resumed.
            Err(e)
                if ticket.adoptable
                    && state.on_unavailable() == crate::config::OnUnavailable::Local =>
            {
                tracing::warn!(error = %e, session = %digest, "state store unavailable: session resumed without checking that it was not deleted");
                crate::state::SessionFacts::default()
            }
            Err(e) => {
                // Fail closed: whether it was ended cannot be known.
                tracing::warn!(error = %e, session = %digest, "session not resumed: state store unavailable");
                return Err(SessionError::NotFound);
            }
        };
        if facts.ended {
            tracing::debug!(session = %digest, "ended session refused");
            return Err(SessionError::NotFound);
        }
        if ticket.adoptable {
            let Some(route) = route else {
                return Err(SessionError::NotFound);
            };
            return self
                .adopt(id, principal, route, ticket)
                .map(Resolved::Local);
        }
        match facts.owner_addr {
            Some(addr) if !forwarded => Ok(Resolved::Forward {
                owner: ticket.owner,
                addr,
            }),
            Some(_) => Err(SessionError::NotFound),
            None => {
                tracing::info!(
                    session = %digest, owner = %ticket.owner,
                    "session refused: its owner replica is gone"
                );
                Err(SessionError::NotFound)
            }
        }
    }

    fn held(&self, id: &str) -> bool {
        self.sessions
            .lock()
            .map(|s| s.contains_key(id))
            .unwrap_or(false)
    }

    /// Builds a local copy of a session another replica opened: its
    /// upstreams continue the backend sessions the ticket names.
    fn adopt(
        self: &Arc<Self>,
        id: &str,
        principal: &Principal,
        route: &Route,
        ticket: Ticket,
    ) -> Result<Arc<Session>, SessionError> {
        let same_route = route.key == ticket.route
            && route.backends.len() == ticket.backends.len()
            && route
                .backends
                .iter()
                .zip(&ticket.backends)
                .all(|(b, t)| b.name() == t.name && b.resumable());
        if !same_route {
            tracing::info!(session = %seal::digest(id), "session refused: opened on another route");
            return Err(SessionError::NotFound);
        }
        let client = ClientFacts {
            era: Era::Handshake,
            protocol_version: ticket.protocol_version.clone(),
            connect: crate::backend::ConnectParams {
                client_version: ticket.protocol_version.clone(),
                client_info: to_raw(&ticket.client_info),
                client_capabilities: match &ticket.client_capabilities {
                    Value::Null => to_raw(&serde_json::json!({})),
                    c => to_raw(c),
                },
                credentials: crate::backend::credentials::Credentials::caller(principal),
                resumable: true,
            },
        };
        let mut conns = Vec::with_capacity(route.backends.len());
        for (backend, t) in route.backends.iter().zip(&ticket.backends) {
            let facts = ServerFacts {
                era: if t.stateless {
                    Era::Stateless
                } else {
                    Era::Handshake
                },
                protocol_version: t.protocol_version.clone(),
                capabilities: match &t.capabilities {
                    Value::Null => serde_json::json!({}),
                    c => c.clone(),
                },
                server_info: Value::Null,
                instructions: None,
            };
            let conn = backend
                .resume(&client.connect, t.session_id.clone(), facts)
                .ok_or(SessionError::NotFound)?;
            conns.push(conn);
        }
        let session = Session::new(
            self,
            id.to_owned(),
            principal.clone(),
            route.clone(),
            client,
            "streamable_http",
        );
        for (index, conn) in conns.into_iter().enumerate() {
            session.install(index, conn);
        }
        let Ok(mut sessions) = self.sessions.lock() else {
            return Err(SessionError::NotFound);
        };
        // Two requests of one session adopted at once: the first one wins.
        if let Some(existing) = sessions.get(id) {
            let existing = existing.clone();
            drop(sessions);
            session.close();
            return Ok(existing);
        }
        sessions.insert(id.to_owned(), session.clone());
        drop(sessions);
        self.metrics
            .sessions_adopted
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.sessions_active.fetch_add(1, Ordering::Relaxed);
        self.metrics.session_opened("streamable_http");
        tracing::info!(
            session = %seal::digest(id),
            owner = %ticket.owner,
            sub = %principal.sub,
            backends = ticket.backends.len(),
            "session adopted from another replica"
        );
        Ok(session)
    }

    /// Connects every backend of an adoptable session before its id is
    /// sealed (the id carries their session ids); mints the id.
    pub(super) async fn open_resumable(
        self: &Arc<Self>,
        principal: &Principal,
        route: &Route,
        client: &ClientFacts,
    ) -> (Vec<Result<Connection, BackendError>>, Ticket) {
        let key = principal.binding_key();
        let results = futures::future::join_all(
            route
                .backends
                .iter()
                .map(|b| b.connect(&key, &client.connect)),
        )
        .await;
        let mut ticket = self.ticket(route, client);
        // A backend that failed here (a multiplexed route serves without
        // it) has no session another replica could continue: the session
        // is then its owner's alone, and is forwarded there. Its missing
        // backend is not reconnected later either (`Session::open_conn`).
        ticket.adoptable = results.iter().all(Result::is_ok);
        ticket.backends = route
            .backends
            .iter()
            .zip(&results)
            .map(|(b, r)| match r {
                Ok(conn) => {
                    let facts = conn.facts();
                    let stateless = facts.era == Era::Stateless;
                    seal::BackendTicket {
                        name: b.name().to_owned(),
                        session_id: conn.backend_session_id(),
                        protocol_version: facts.protocol_version.clone(),
                        stateless,
                        capabilities: if stateless {
                            compact_capabilities(&facts.capabilities)
                        } else {
                            Value::Null
                        },
                    }
                }
                Err(_) => seal::BackendTicket {
                    name: b.name().to_owned(),
                    ..Default::default()
                },
            })
            .collect();
        (results, ticket)
    }

    /// The part of a ticket every session of this replica shares.
    pub(super) fn ticket(&self, route: &Route, client: &ClientFacts) -> Ticket {
        let raw = |r: &serde_json::value::RawValue| {
            serde_json::from_str::<Value>(r.get()).unwrap_or(Value::Null)
        };
        Ticket {
            owner: self
                .state
                .as_ref()
                .map(|s| s.replica_id().to_owned())
                .unwrap_or_default(),
            route: route.key.clone(),
            protocol_version: client.protocol_version.clone(),
            client_info: raw(&client.connect.client_info),
            client_capabilities: raw(&client.connect.client_capabilities),
            adoptable: false,
            backends: Vec::new(),
        }
    }

    /// Seals `ticket` for `principal`; a ticket too long for a header
    /// loses the client's facts first (a re-initialized backend then gets
    /// empty ones), then adoptability (the owner serves it).
    pub(super) fn seal_ticket(&self, principal: &Principal, mut ticket: Ticket) -> String {
        let Some(sealer) = &self.sealer else {
            return super::new_session_id();
        };
        if let Ok(id) = sealer.seal_ticket(principal, &ticket) {
            return id;
        }
        ticket.client_info = Value::Null;
        ticket.client_capabilities = Value::Null;
        if let Ok(id) = sealer.seal_ticket(principal, &ticket) {
            return id;
        }
        tracing::warn!("session ticket too long: the session is served by its owner only");
        ticket.adoptable = false;
        ticket.backends.clear();
        sealer
            .seal_ticket(principal, &ticket)
            .unwrap_or_else(|_| sealer.seal(principal))
    }

    /// Ends a session on every replica: here, its backend sessions (a
    /// resumable session's are not ended by dropping them), and in Redis
    /// so other replicas drop their copies and never adopt it again.
    pub async fn end_session_everywhere(&self, id: &str) -> bool {
        let session = self.sessions.lock().ok().and_then(|s| s.get(id).cloned());
        let resumable = session.as_ref().is_some_and(|s| s.is_resumable());
        if let Some(session) = &session
            && resumable
        {
            session.end_backend_sessions().await;
        }
        let ended = self.end_session(id);
        if let (Some(state), true) = (&self.state, resumable || self.tickets("streamable_http")) {
            let digest = seal::digest(id);
            if let Err(e) = state.end_session(&digest).await {
                tracing::warn!(error = %e, session = %digest, "other replicas not told that the session ended");
            }
        }
        ended
    }

    /// Another replica announced that a client ended this session.
    pub fn end_local_session_by_digest(&self, digest: &str) {
        let n = self.end_sessions_where(|s| seal::digest(&s.id) == digest);
        if n > 0 {
            tracing::info!(session = %digest, "session ended on another replica");
        }
    }

    /// Another replica received the client's cancellation of a request
    /// this one may be running.
    pub fn cancel_local_request(&self, digest: &str, request_id: &str) {
        let Ok(request_id) = serde_json::from_str::<crate::mcp::JsonRpcId>(request_id) else {
            return;
        };
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .map(|s| {
                s.values()
                    .filter(|s| s.is_resumable() && seal::digest(&s.id) == digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for session in sessions {
            if session.abort_request(&request_id) {
                tracing::info!(session = %digest, "request cancelled through another replica");
            }
        }
    }

    /// A cancellation for a request not running here: announced, so the
    /// replica running it aborts it.
    pub(super) async fn announce_cancel(
        &self,
        session_id: &str,
        request_id: &crate::mcp::JsonRpcId,
    ) {
        let Some(state) = &self.state else { return };
        let request_id = serde_json::to_string(request_id).unwrap_or_default();
        if let Err(e) = state
            .announce_cancel(&seal::digest(session_id), &request_id)
            .await
        {
            tracing::warn!(error = %e, "cancellation not passed on to the other replicas");
        }
    }
}

/// What a ticket keeps of a stateless backend's capabilities: which ones it
/// has and their `true` flags (`listChanged`, `subscribe`), all the listen
/// bridge reads; nested objects and texts would only lengthen the id.
fn compact_capabilities(capabilities: &Value) -> Value {
    let Some(all) = capabilities.as_object() else {
        return serde_json::json!({});
    };
    let compact = all
        .iter()
        .map(|(name, value)| {
            let flags: serde_json::Map<String, Value> = value
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| v.as_bool() == Some(true))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), Value::Object(flags))
        })
        .collect();
    Value::Object(compact)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn compact_capabilities_keep_names_and_true_flags() {
        let full = json!({
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": false},
            "logging": {},
            "experimental": {"x": {"deep": "text"}},
        });
        assert_eq!(
            super::compact_capabilities(&full),
            json!({"tools": {"listChanged": true}, "resources": {"subscribe": true},
                   "logging": {}, "experimental": {}})
        );
        assert_eq!(super::compact_capabilities(&json!(null)), json!({}));
    }
}
