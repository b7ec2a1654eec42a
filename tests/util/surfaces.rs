//! What the backends of the front-door × backend matrices offer
//! (`front_doors.rs`, `backends.rs`): the tools, resource and server→client
//! request each scenario exercises, per server.

use serde_json::{Value, json};

/// What a server offers, for the scenarios.
pub struct Surface {
    /// Tools that must be listed (with the client's declared capabilities).
    pub tools: &'static [&'static str],
    /// A tool reporting 3 progress steps quickly: (name, arguments, result text).
    pub progress: (&'static str, fn() -> Value, &'static str),
    /// A resource and a piece of its text.
    pub resource: (&'static str, &'static str),
    /// A tool that asks the client: (name, arguments, request method, text
    /// the answer puts in the result).
    pub server_request: (&'static str, fn() -> Value, &'static str, &'static str),
    /// A tool that runs for a minute, reporting progress every second.
    pub slow: (&'static str, fn() -> Value),
    /// The driver scenario of the parity tests.
    pub scenario: &'static str,
}

/// `mcp-gateway demo-server`.
pub const DEMO: Surface = Surface {
    tools: &["echo", "delete_item", "slow_count", "ask_user", "summarize"],
    progress: (
        "slow_count",
        || json!({"steps": 3, "delay_ms": 10}),
        "counted to 3",
    ),
    resource: ("demo://readme", "mcp-gateway demo server"),
    server_request: (
        "ask_user",
        || json!({"question": "favourite colour?"}),
        "elicitation/create",
        "user said: blue",
    ),
    slow: ("slow_count", || json!({"steps": 60, "delay_ms": 1000})),
    scenario: "demo-full",
};

/// The Python SDK servers (`py_demo_server.py`, `py_ws_server.py`).
pub const PY_DEMO: Surface = Surface {
    tools: &["echo", "delete_item", "slow_count", "ask_user", "summarize"],
    progress: (
        "slow_count",
        || json!({"steps": 3, "delay_ms": 10}),
        "counted to 3",
    ),
    resource: ("demo://readme", "A demo resource."),
    server_request: (
        "ask_user",
        || json!({"question": "favourite colour?"}),
        "elicitation/create",
        "user answered blue",
    ),
    slow: ("slow_count", || json!({"steps": 60, "delay_ms": 1000})),
    scenario: "demo-full",
};

/// `@modelcontextprotocol/server-everything`.
pub const EVERYTHING: Surface = Surface {
    tools: &[
        "echo",
        "get-sum",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
    ],
    progress: (
        "trigger-long-running-operation",
        || json!({"duration": 0.3, "steps": 3}),
        "Long running operation completed",
    ),
    resource: (
        "demo://resource/static/document/features.md",
        "Everything Server",
    ),
    server_request: (
        "trigger-sampling-request",
        || json!({"prompt": "hello", "maxTokens": 10}),
        "sampling/createMessage",
        "short",
    ),
    slow: (
        "trigger-long-running-operation",
        || json!({"duration": 60, "steps": 60}),
    ),
    scenario: "everything",
};
