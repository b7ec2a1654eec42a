//! Principal, call and context → a Cedar request and its entities, built
//! per message from what the gateway already knows (no backend is asked).

use std::str::FromStr;

use cedar_policy::{
    Context as CedarContext, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request,
    RestrictedExpression,
};

use super::{Context, Snapshot};
use crate::auth::Principal;
use crate::mcp::{Call, Method, Target};
use crate::router::PREFIX_SEPARATOR;

/// Why a request could not be built (fails closed).
#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error("bad entity type {0:?}")]
    Type(String),
    #[error("entity: {0}")]
    Entity(String),
    #[error("context: {0}")]
    Context(String),
    #[error("request: {0}")]
    Request(String),
}

pub struct Built {
    pub request: Request,
    pub entities: Entities,
    /// The resource, as Cedar prints it, for messages.
    pub resource: String,
}

/// The schema's entity types, parsed once per process (Cedar parses a type
/// name with its full grammar).
const KINDS: [&str; 7] = [
    "Mcp::Tenant",
    "Mcp::Principal",
    "Mcp::Backend",
    "Mcp::Tool",
    "Mcp::Resource",
    "Mcp::Prompt",
    "Mcp::Arguments",
];

static TYPE_NAMES: std::sync::LazyLock<Vec<Option<EntityTypeName>>> =
    std::sync::LazyLock::new(|| {
        KINDS
            .iter()
            .map(|k| EntityTypeName::from_str(k).ok())
            .collect()
    });

fn uid(kind: &str, id: &str) -> Result<EntityUid, EntityError> {
    let name = match KINDS.iter().position(|k| *k == kind) {
        Some(i) => TYPE_NAMES.get(i).cloned().flatten(),
        None => EntityTypeName::from_str(kind).ok(),
    }
    .ok_or_else(|| EntityError::Type(kind.to_owned()))?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s)))
}

fn entity(
    uid: EntityUid,
    attrs: Vec<(&str, RestrictedExpression)>,
    parents: Vec<EntityUid>,
) -> Result<Entity, EntityError> {
    Entity::new(
        uid,
        attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        parents.into_iter().collect(),
    )
    .map_err(|e| EntityError::Entity(e.to_string()))
}

/// The `named_key` of the request's resource, when it is a tool or a
/// prompt (the same `name` attribute `build` gives the entity).
pub fn named_key(call: &Call, ctx: &Context) -> Option<String> {
    let (kind, public) = match (&call.method, &call.target) {
        (Method::ToolsCall, Target::Tool(public)) => ("Mcp::Tool", public),
        (Method::PromptsGet | Method::CompletionComplete, Target::Prompt(public)) => {
            ("Mcp::Prompt", public)
        }
        _ => return None,
    };
    let name = ctx.name.as_deref().unwrap_or(public);
    Some(super::load::named_key(kind, name))
}

pub fn build(
    snapshot: &Snapshot,
    principal: &Principal,
    call: &Call,
    ctx: &Context,
) -> Result<Built, EntityError> {
    let mut entities = Vec::new();

    // Principal, in its tenant.
    let mut principal_parents = Vec::new();
    if let Some(t) = &principal.tenant {
        let tenant = uid("Mcp::Tenant", t)?;
        principal_parents.push(tenant.clone());
        entities.push(entity(tenant, vec![], vec![])?);
    }
    let mut attrs = vec![
        ("sub", string(&principal.sub)),
        ("scopes", strings(&principal.scopes)),
        ("actors", strings(&principal.actors)),
        (
            "delegation_depth",
            RestrictedExpression::new_long(principal.delegation_depth() as i64),
        ),
        ("auth", string(principal.auth)),
    ];
    for (key, value) in [
        ("tenant", &principal.tenant),
        ("client_id", &principal.client_id),
        ("agent_type", &principal.agent_type),
    ] {
        if let Some(v) = value {
            attrs.push((key, string(v)));
        }
    }
    let principal_uid = uid("Mcp::Principal", &principal.sub)?;
    entities.push(entity(principal_uid.clone(), attrs, principal_parents)?);

    // The backend, in every tenant that lists it.
    let backend_name = ctx.backend.clone().unwrap_or_default();
    let backend_uid = uid("Mcp::Backend", &backend_name)?;
    let mut backend_parents = Vec::new();
    for t in snapshot
        .backend_tenants
        .get(&backend_name)
        .into_iter()
        .flatten()
    {
        let tenant = uid("Mcp::Tenant", t)?;
        if principal.tenant.as_deref() != Some(t.as_str()) {
            entities.push(entity(tenant.clone(), vec![], vec![])?);
        }
        backend_parents.push(tenant);
    }
    entities.push(entity(
        backend_uid.clone(),
        vec![("name", string(&backend_name))],
        backend_parents,
    )?);

    // The resource.
    let qualified = |name: &str| -> String {
        match &ctx.backend {
            Some(b) if !b.is_empty() => format!("{b}{PREFIX_SEPARATOR}{name}"),
            _ => name.to_owned(),
        }
    };
    let own_name = |public: &str| ctx.name.clone().unwrap_or_else(|| public.to_owned());
    let resource_uid = match (&call.method, &call.target) {
        (Method::ToolsCall, Target::Tool(public)) => {
            let name = own_name(public);
            let facts = ctx.tool.unwrap_or_default();
            let r = uid("Mcp::Tool", &qualified(&name))?;
            entities.push(entity(
                r.clone(),
                vec![
                    ("name", string(&name)),
                    ("backend", string(&backend_name)),
                    ("read_only", RestrictedExpression::new_bool(facts.read_only)),
                    (
                        "destructive",
                        RestrictedExpression::new_bool(facts.destructive),
                    ),
                    (
                        "idempotent",
                        RestrictedExpression::new_bool(facts.idempotent),
                    ),
                    (
                        "open_world",
                        RestrictedExpression::new_bool(facts.open_world),
                    ),
                ],
                vec![backend_uid.clone()],
            )?);
            r
        }
        (
            Method::ResourcesRead
            | Method::ResourcesSubscribe
            | Method::ResourcesUnsubscribe
            | Method::CompletionComplete,
            Target::Resource(uri),
        ) => {
            let r = uid("Mcp::Resource", uri)?;
            entities.push(entity(
                r.clone(),
                vec![("uri", string(uri)), ("backend", string(&backend_name))],
                vec![backend_uid.clone()],
            )?);
            r
        }
        (Method::PromptsGet | Method::CompletionComplete, Target::Prompt(public)) => {
            let name = own_name(public);
            let r = uid("Mcp::Prompt", &qualified(&name))?;
            entities.push(entity(
                r.clone(),
                vec![("name", string(&name)), ("backend", string(&backend_name))],
                vec![backend_uid.clone()],
            )?);
            r
        }
        // A call without its target (no name, no URI) is about the backend;
        // for tools/call, prompts/get and reads that does not match the
        // action's resource type and is denied.
        _ => backend_uid.clone(),
    };

    // Context.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let mut context = vec![
        ("transport".to_owned(), string(ctx.transport)),
        (
            "protocol_version".to_owned(),
            string(ctx.protocol_version.as_deref().unwrap_or("")),
        ),
        ("time".to_owned(), RestrictedExpression::new_long(now)),
        (
            "hour_utc".to_owned(),
            RestrictedExpression::new_long((now / 3600) % 24),
        ),
    ];
    for (key, value) in [
        ("origin", &ctx.origin),
        ("remote_addr", &ctx.remote_addr),
        ("client_name", &ctx.client_name),
    ] {
        if let Some(v) = value {
            context.push((key.to_owned(), string(v)));
        }
    }
    if snapshot.expose_arguments
        && let Some(arguments) = &ctx.arguments
    {
        let args_uid = uid("Mcp::Arguments", "call")?;
        let tags = arguments.iter().map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), RestrictedExpression::new_string(text))
        });
        entities.push(
            Entity::new_with_tags(args_uid.clone(), [], [], tags)
                .map_err(|e| EntityError::Entity(e.to_string()))?,
        );
        context.push((
            "arguments".to_owned(),
            RestrictedExpression::new_entity_uid(args_uid),
        ));
    }
    let context =
        CedarContext::from_pairs(context).map_err(|e| EntityError::Context(e.to_string()))?;
    let action = uid("Mcp::Action", call.method.action())?;
    let resource = resource_uid.to_string();
    let request = Request::new(principal_uid, action, resource_uid, context, None)
        .map_err(|e| EntityError::Request(e.to_string()))?;
    let entities =
        Entities::from_entities(entities, None).map_err(|e| EntityError::Entity(e.to_string()))?;
    Ok(Built {
        request,
        entities,
        resource,
    })
}
