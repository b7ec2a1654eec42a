//! stdio transport: newline-delimited JSON-RPC over any byte stream pair. Requests run
//! concurrently; one writer task owns the output. Cancellation: `notifications/cancelled`
//! (both eras). Never writes anything but JSON-RPC messages to the output.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::core::{self, Ctx, Demo, PendingRequests, RpcError, Session};

/// How long in-flight requests may finish after the input closes.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1000);
const OUTPUT_QUEUE: usize = 256;

/// An in-flight request, cancellable by `notifications/cancelled`.
struct InFlight {
    cancel: CancellationToken,
    /// Listens never finish on their own; they are cancelled at shutdown.
    is_listen: bool,
    /// Tells a reused id's newer request apart from the finished one.
    serial: u64,
}

#[derive(Default)]
struct Connection {
    /// The handshake session, once `initialize` arrived.
    session: Mutex<Option<Arc<Session>>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    next_serial: AtomicU64,
    /// Server→client requests are connection-wide: they survive a re-`initialize`.
    pending: Arc<PendingRequests>,
}

impl Connection {
    fn session(&self) -> MutexGuard<'_, Option<Arc<Session>>> {
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// JSON-RPC ids are numbers or strings; the serialized id keys the in-flight map.
fn id_key(id: &Value) -> Option<String> {
    (id.is_string() || id.is_number()).then(|| id.to_string())
}

/// Serves one client until `input` reaches end-of-file.
pub(crate) async fn serve<R, W>(demo: Arc<Demo>, input: R, output: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut outbox) = mpsc::channel::<Value>(OUTPUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(message) = outbox.recv().await {
            let mut line = message.to_string();
            line.push('\n');
            output.write_all(line.as_bytes()).await?;
            output.flush().await?;
        }
        io::Result::Ok(())
    });

    let connection = Arc::new(Connection::default());
    let forwarder = tokio::spawn(forward_events(
        demo.subscribe(),
        connection.clone(),
        out.clone(),
    ));
    let mut tasks = JoinSet::new();
    let mut lines = BufReader::new(input).lines();
    let read_result = loop {
        while tasks.try_join_next().is_some() {}
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        if line.trim().is_empty() {
            continue;
        }
        on_line(&demo, &connection, &out, &mut tasks, &line).await;
    };

    // Input closed: fail server→client requests, end listens, give the rest a moment.
    tracing::debug!("demo stdio input closed");
    connection.pending.fail_all();
    for in_flight in connection.in_flight().values().filter(|f| f.is_listen) {
        in_flight.cancel.cancel();
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    forwarder.abort();
    let _ = forwarder.await;
    drop(out);
    let write_result = writer
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
    read_result.and(write_result)
}

/// Handshake-era change notifications (the stdio analogue of the HTTP GET stream).
async fn forward_events(
    mut events: broadcast::Receiver<core::Event>,
    connection: Arc<Connection>,
    out: mpsc::Sender<Value>,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let session = connection.session().clone();
        if let Some(message) =
            session.and_then(|session| core::handshake_notification(&session, &event))
            && out.send(message).await.is_err()
        {
            return;
        }
    }
}

async fn on_line(
    demo: &Arc<Demo>,
    connection: &Arc<Connection>,
    out: &mpsc::Sender<Value>,
    tasks: &mut JoinSet<()>,
    line: &str,
) {
    let message: Value = match serde_json::from_str(line) {
        Ok(message) => message,
        Err(_) => {
            let _ = out
                .send(core::response(&Value::Null, Err(RpcError::Parse)))
                .await;
            return;
        }
    };
    let Some(object) = message.as_object() else {
        let error =
            RpcError::InvalidRequest("expected one JSON-RPC message object (no batches)".into());
        let _ = out.send(core::response(&Value::Null, Err(error))).await;
        return;
    };
    let id = object.get("id");
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            // A response to one of our elicitation/sampling requests.
            connection.pending.resolve(&message);
        } else {
            let error = RpcError::InvalidRequest("message has no method".into());
            let _ = out
                .send(core::response(id.unwrap_or(&Value::Null), Err(error)))
                .await;
        }
        return;
    };
    let params = object.get("params").cloned().unwrap_or_else(|| json!({}));
    let Some(id) = id else {
        on_notification(connection, method, &params);
        return;
    };
    let Some(key) = id_key(id) else {
        let error = RpcError::InvalidRequest("id must be a string or a number".into());
        let _ = out.send(core::response(&Value::Null, Err(error))).await;
        return;
    };
    tracing::debug!(rpc.method = method, rpc.id = %id, "demo stdio request");

    if method == "initialize" {
        // Served inline so that the next line already sees the session.
        let (session, result) = core::initialize(&params, connection.pending.clone());
        *connection.session() = Some(session);
        let _ = out.send(core::response(id, Ok(result))).await;
        return;
    }
    let session = connection.session().clone();
    let era = match core::route_era(&params, session.as_ref()) {
        Ok(era) => era,
        // Handshake-era ping may precede `initialize`.
        Err(_)
            if method == "ping"
                && core::read_envelope(&params)
                    .is_ok_and(|e| matches!(e, core::EnvelopeCheck::Absent)) =>
        {
            let _ = out.send(core::response(id, Ok(json!({})))).await;
            return;
        }
        Err(error) => {
            let _ = out.send(core::response(id, Err(error))).await;
            return;
        }
    };

    let cancel = CancellationToken::new();
    let serial = connection.next_serial.fetch_add(1, Ordering::Relaxed);
    connection.in_flight().insert(
        key.clone(),
        InFlight {
            cancel: cancel.clone(),
            is_listen: method == "subscriptions/listen",
            serial,
        },
    );
    let demo = demo.clone();
    let connection = connection.clone();
    let out = out.clone();
    let id = id.clone();
    let method = method.to_owned();
    tasks.spawn(async move {
        let ctx = Ctx::new(era.clone(), id.clone(), out.clone());
        let outcome = tokio::select! {
            // Cancellation that arrived first wins over a result that became ready with it.
            biased;
            // Cancelled: stop and send nothing more for this request.
            () = cancel.cancelled() => {
                tracing::debug!(rpc.method = %method, rpc.id = %id, "demo stdio request cancelled");
                None
            }
            outcome = core::handle_request(&demo, &ctx, &method, &params) => Some(outcome),
        };
        {
            let mut in_flight = connection.in_flight();
            // A reused id may belong to a newer request by now.
            if in_flight.get(&key).is_some_and(|f| f.serial == serial) {
                in_flight.remove(&key);
            }
        }
        if let Some(outcome) = outcome {
            let outcome = outcome.map(|result| core::finish(&era, &method, &params, result));
            let _ = out.send(core::response(&id, outcome)).await;
        }
    });
}

fn on_notification(connection: &Connection, method: &str, params: &Value) {
    match method {
        "notifications/cancelled" => {
            if let Some(key) = params.get("requestId").and_then(id_key)
                && let Some(in_flight) = connection.in_flight().remove(&key)
            {
                in_flight.cancel.cancel();
            }
        }
        // Nothing to do: sessions are usable right after `initialize`.
        "notifications/initialized" => {}
        other => tracing::debug!(rpc.method = other, "demo stdio notification ignored"),
    }
}
