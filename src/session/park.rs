//! A stateless (2026-07-28) client in front of a handshake-era server: the
//! server asks the client something mid-call (elicitation, sampling,
//! roots), but the client can only take questions as an `input_required`
//! result. The gateway parks the running call, answers `input_required`
//! with a `requestState` it minted, and resumes the call when the client
//! retries with `inputResponses`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::client::{Out, Session};
use crate::backend::{BackendError, ClientBound};
use crate::mcp::envelope::{error_object, to_raw};
use crate::mcp::meta::params_object;
use crate::mcp::{self, Envelope, Era, ResponsePayload};

/// `requestState` values the gateway minted start with this.
const STATE_PREFIX: &str = "mcp-gateway/parked/";
/// A parked call waits this long for the client's retry.
const PARK_TTL: Duration = Duration::from_secs(300);

type Done = oneshot::Receiver<Result<ResponsePayload, BackendError>>;

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ParkedCall {
    principal_key: String,
    events: mpsc::Receiver<ClientBound>,
    done: Done,
    replies: HashMap<String, oneshot::Sender<ResponsePayload>>,
    _task: AbortOnDrop,
    expires: Instant,
}

#[derive(Default)]
pub(super) struct Parked {
    calls: Mutex<HashMap<String, ParkedCall>>,
}

impl Parked {
    /// Drops parked calls nobody came back for (the backend call is cancelled).
    pub(super) fn expire(&self) {
        if let Ok(mut calls) = self.calls.lock() {
            let now = Instant::now();
            calls.retain(|_, c| c.expires > now);
        }
    }
}

pub(super) async fn forward_stateless(
    session: &Arc<Session>,
    index: usize,
    env: Envelope,
    out: &Out,
    timeout: Option<Duration>,
) -> Result<ResponsePayload, BackendError> {
    let method = env.method.clone().unwrap_or_default();
    let conn = session.connection(index).await?;
    if conn.facts().era == Era::Stateless {
        return session
            .forward(index, &method, env.params, out, timeout)
            .await;
    }
    let Some(gw) = session.gateway() else {
        return Err(BackendError::Unavailable {
            backend: conn.backend().to_owned(),
            reason: "shutting down".into(),
        });
    };
    let params = params_object(env.params.as_deref());
    if let Some(state) = params.get("requestState").and_then(Value::as_str)
        && state.starts_with(STATE_PREFIX)
    {
        let parked = gw
            .parked
            .calls
            .lock()
            .ok()
            .and_then(|mut c| c.remove(state));
        let Some(mut parked) =
            parked.filter(|p| p.principal_key == session.principal.binding_key())
        else {
            return Ok(ResponsePayload::Error(error_object(
                mcp::code::INVALID_PARAMS,
                "unknown or expired requestState",
                Some(serde_json::json!({"reason": "unknown or expired requestState"})),
            )));
        };
        let responses = params
            .get("inputResponses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (key, reply) in parked.replies.drain() {
            let payload = match responses.get(&key) {
                Some(v) => ResponsePayload::Result(to_raw(v)),
                None => ResponsePayload::Error(error_object(
                    mcp::code::INVALID_PARAMS,
                    "the client gave no answer",
                    None,
                )),
            };
            let _ = reply.send(payload);
        }
        return drive(session, &gw, parked.events, parked.done, parked._task, out).await;
    }
    let (tx, rx) = mpsc::channel(64);
    let (done_tx, done_rx) = oneshot::channel();
    let params = env.params;
    let task = match session.tape_to_backend(index, &method, params.as_deref()) {
        None => tokio::spawn(async move {
            let r = conn.request(&method, params, Some(tx), timeout).await;
            let _ = done_tx.send(r);
        }),
        // Recorded: what the backend sends passes the tape on its way.
        Some(call) => {
            let recorder = session.clone();
            tokio::spawn(async move {
                let backend = conn.backend().to_owned();
                let (seen_tx, mut seen) = mpsc::channel::<ClientBound>(64);
                let request = conn.request(&method, params, Some(seen_tx), timeout);
                tokio::pin!(request);
                let r = loop {
                    tokio::select! {
                        r = &mut request => break r,
                        Some(msg) = seen.recv() => {
                            recorder.tape_from_backend(&backend, call, &msg);
                            let _ = tx.send(msg).await;
                        }
                    }
                };
                while let Ok(msg) = seen.try_recv() {
                    recorder.tape_from_backend(&backend, call, &msg);
                    let _ = tx.send(msg).await;
                }
                recorder.tape_backend_result(&backend, call, &r);
                let _ = done_tx.send(r);
            })
        }
    };
    drive(
        session,
        &gw,
        rx,
        done_rx,
        AbortOnDrop(task.abort_handle()),
        out,
    )
    .await
}

async fn drive(
    session: &Arc<Session>,
    gw: &Arc<super::Gateway>,
    mut events: mpsc::Receiver<ClientBound>,
    mut done: Done,
    task: AbortOnDrop,
    out: &Out,
) -> Result<ResponsePayload, BackendError> {
    let backend_gone = || BackendError::Unavailable {
        backend: String::new(),
        reason: "call ended".into(),
    };
    loop {
        // Events first: what the server sent before its response must reach
        // the client before the response does.
        let msg = tokio::select! {
            biased;
            m = events.recv() => m,
            r = &mut done => {
                while let Ok(ClientBound::Notification { method, params }) = events.try_recv() {
                    let _ = out.send(Envelope::notification(method, params)).await;
                }
                return r.unwrap_or_else(|_| Err(backend_gone()));
            }
        };
        let Some(msg) = msg else {
            return (&mut done).await.unwrap_or_else(|_| Err(backend_gone()));
        };
        match msg {
            ClientBound::Notification { method, params } => {
                let _ = out.send(Envelope::notification(method, params)).await;
            }
            ClientBound::Request {
                method,
                params,
                reply,
                ..
            } => {
                let mut requests = Map::new();
                let mut replies = HashMap::new();
                let mut add =
                    |method: String, params: Option<Box<serde_json::value::RawValue>>, reply| {
                        let key = format!("input-{}", replies.len() + 1);
                        let params: Value = params
                            .and_then(|p| serde_json::from_str(p.get()).ok())
                            .unwrap_or_else(|| serde_json::json!({}));
                        requests.insert(
                            key.clone(),
                            serde_json::json!({"method": method, "params": params}),
                        );
                        replies.insert(key, reply);
                    };
                add(method, params, reply);
                // Questions asked together are answered together.
                while let Ok(ClientBound::Request {
                    method,
                    params,
                    reply,
                    ..
                }) = events.try_recv()
                {
                    add(method, params, reply);
                }
                let token = format!("{STATE_PREFIX}{}", super::new_session_id());
                let parked = ParkedCall {
                    principal_key: session.principal.binding_key(),
                    events,
                    done,
                    replies,
                    _task: task,
                    expires: Instant::now() + PARK_TTL,
                };
                if let Ok(mut calls) = gw.parked.calls.lock() {
                    calls.insert(token.clone(), parked);
                }
                return Ok(ResponsePayload::Result(to_raw(&serde_json::json!({
                    "resultType": "input_required",
                    "inputRequests": requests,
                    "requestState": token,
                }))));
            }
        }
    }
}
