//! mcp: bytes → `Envelope`, `Envelope` → `Call`; the protocol revisions and
//! error codes. The only place that knows MCP method names and where their
//! names and URIs live in params. No I/O.
//!
//! Params stay `Box<RawValue>` and are forwarded byte-for-byte; a stage that
//! needs one field parses just that field (see `ParamsProbe`).

pub mod envelope;
pub mod meta;

#[cfg(test)]
mod tests;

pub use envelope::{Envelope, EnvelopeError, JsonRpcId, Kind, ResponsePayload};

/// The stateless revision.
pub const V2026: &str = "2026-07-28";
/// Handshake-era revisions, oldest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The newest handshake-era revision.
pub const LATEST_HANDSHAKE: &str = "2025-11-25";
/// What `MCP-Protocol-Version` means when a session request omits it.
pub const DEFAULT_ABSENT_VERSION: &str = "2025-03-26";
/// Every revision the gateway speaks, oldest first.
pub const ALL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    V2026,
];

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The era a peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `initialize`, sessions, server→client requests.
    Handshake,
    /// 2026-07-28: per-request `_meta`, no sessions, MRTR.
    Stateless,
}

pub fn is_handshake_version(v: &str) -> bool {
    HANDSHAKE_VERSIONS.contains(&v)
}

/// JSON-RPC and MCP error codes (CONTRACT.md "Errors").
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    pub const UNAUTHENTICATED: i64 = -32001;
    pub const FORBIDDEN: i64 = -32003;
    pub const RATE_LIMITED: i64 = -32005;
    pub const BACKEND_UNAVAILABLE: i64 = -32010;
    pub const BACKEND_TIMEOUT: i64 = -32011;
}

/// What a message asks for, as policy sees it (CONTRACT.md "Policy model").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub target: Target,
}

/// The MCP methods the gateway distinguishes; everything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Initialize,
    Discover,
    Ping,
    ToolsList,
    ToolsCall,
    ResourcesList,
    ResourcesTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    SubscriptionsListen,
    PromptsList,
    PromptsGet,
    CompletionComplete,
    LoggingSetLevel,
    Tasks,
    Other(String),
}

impl Method {
    pub fn parse(method: &str) -> Method {
        match method {
            "initialize" => Method::Initialize,
            "server/discover" => Method::Discover,
            "ping" => Method::Ping,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourcesTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "subscriptions/listen" => Method::SubscriptionsListen,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "completion/complete" => Method::CompletionComplete,
            "logging/setLevel" => Method::LoggingSetLevel,
            m if m.starts_with("tasks/") => Method::Tasks,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The policy action name (CONTRACT.md): the MCP method, `connect`,
    /// `tasks` or `other`.
    pub fn action(&self) -> &str {
        match self {
            Method::Initialize | Method::Discover => "connect",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::ResourcesList => "resources/list",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => "resources/subscribe",
            Method::SubscriptionsListen => "subscriptions/listen",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::CompletionComplete => "completion/complete",
            Method::Tasks => "tasks",
            Method::Ping | Method::LoggingSetLevel | Method::Other(_) => "other",
        }
    }

    /// Whether a 2026-07-28 request must carry `Mcp-Name`, and from which param.
    pub fn name_param(&self) -> Option<&'static str> {
        match self {
            Method::ToolsCall | Method::PromptsGet => Some("name"),
            Method::ResourcesRead => Some("uri"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Tool(String),
    Resource(String),
    Prompt(String),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::None => "none",
            Target::Tool(_) => "tool",
            Target::Resource(_) => "resource",
            Target::Prompt(_) => "prompt",
        }
    }
}

/// Classifies a request: method and target (tool name, resource URI or
/// prompt name, as the client wrote it).
pub fn classify(method: &str, params: Option<&serde_json::value::RawValue>) -> Call {
    let method = Method::parse(method);
    let probe = params.map(ParamsProbe::parse).unwrap_or_default();
    let target = match &method {
        Method::ToolsCall => probe.name.map(Target::Tool).unwrap_or(Target::None),
        Method::PromptsGet => probe.name.map(Target::Prompt).unwrap_or(Target::None),
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            probe.uri.map(Target::Resource).unwrap_or(Target::None)
        }
        Method::CompletionComplete => match probe.reference {
            Some(CompletionRef { kind, name, .. }) if kind == "ref/prompt" => {
                name.map(Target::Prompt).unwrap_or(Target::None)
            }
            Some(CompletionRef { uri, .. }) => uri.map(Target::Resource).unwrap_or(Target::None),
            None => Target::None,
        },
        _ => Target::None,
    };
    Call { method, target }
}

/// The few params fields the gateway reads; everything else is skipped
/// without being materialized.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ParamsProbe {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default, rename = "ref")]
    pub reference: Option<CompletionRef>,
    #[serde(default, rename = "_meta")]
    pub meta: Option<meta::MetaProbe>,
}

impl ParamsProbe {
    pub fn parse(params: &serde_json::value::RawValue) -> ParamsProbe {
        serde_json::from_str(params.get()).unwrap_or_default()
    }
}

/// `name` and `uri` of params, borrowed from the text where they need no
/// unescaping; everything else is skipped. For the paths that need only
/// these (headers, tool resolution).
#[derive(Debug, Default, serde::Deserialize)]
pub struct NameProbe<'a> {
    #[serde(borrow, default)]
    pub name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub uri: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> NameProbe<'a> {
    pub fn parse(params: &'a serde_json::value::RawValue) -> NameProbe<'a> {
        serde_json::from_str(params.get()).unwrap_or_default()
    }
}

/// Whether params' `_meta` carries a protocol version (the 2026-07-28
/// envelope); nothing is copied.
pub fn has_meta_version(params: Option<&serde_json::value::RawValue>) -> bool {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default, rename = "_meta")]
        meta: Option<Meta<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<&'a RawValue>,
    }
    params
        .and_then(|p| serde_json::from_str::<Params>(p.get()).ok())
        .and_then(|p| p.meta)
        .is_some_and(|m| m.version.is_some())
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct CompletionRef {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
}
