//! router: request path → `Route` (which backends, whether names are
//! prefixed), and names on a multiplexed route → (backend, the backend's own
//! name). Pure: no I/O.
//!
//! The default route (`/mcp`) holds every configured backend; with one
//! backend it is that server as itself, with several every tool and prompt
//! name is `{backend}__{name}`. `/servers/{backend}/mcp` is one backend with
//! its own names.

use std::sync::Arc;

pub mod curation;

use crate::backend::Backend;

/// The separator between backend and name on a multiplexed route.
pub const PREFIX_SEPARATOR: &str = "__";

#[derive(Clone)]
pub struct Route {
    /// `""` for the default route, else the backend name of `/servers/{backend}`.
    pub key: String,
    pub backends: Vec<Arc<Backend>>,
    /// Whether tool and prompt names carry the backend prefix.
    pub prefixed: bool,
    /// The `[[routes]]` entry that selected this route (its policies decide).
    pub selected_by: Option<String>,
    /// The request's `Origin` and the client's address, for policy context.
    pub origin: Option<String>,
    pub remote_addr: Option<String>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("key", &self.key)
            .field(
                "backends",
                &self.backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
            )
            .field("prefixed", &self.prefixed)
            .finish()
    }
}

pub struct Router {
    backends: Vec<Arc<Backend>>,
}

impl Router {
    pub fn new(backends: Vec<Arc<Backend>>) -> Router {
        Router { backends }
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The multiplexed route over every backend.
    pub fn default_route(&self) -> Route {
        Route {
            key: String::new(),
            backends: self.backends.clone(),
            prefixed: self.backends.len() > 1,
            selected_by: None,
            origin: None,
            remote_addr: None,
        }
    }

    /// `/servers/{backend}`: `None` when no such backend exists.
    pub fn backend_route(&self, name: &str) -> Option<Route> {
        let backend = self.backends.iter().find(|b| b.name() == name)?;
        Some(Route {
            key: name.to_owned(),
            backends: vec![backend.clone()],
            prefixed: false,
            selected_by: None,
            origin: None,
            remote_addr: None,
        })
    }
}

impl Route {
    /// Splits a client-visible name into (backend index, backend's own name).
    pub fn resolve_name<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        if !self.prefixed {
            return (!self.backends.is_empty()).then_some((0, name));
        }
        let (backend, rest) = name.split_once(PREFIX_SEPARATOR)?;
        let index = self.backends.iter().position(|b| b.name() == backend)?;
        Some((index, rest))
    }

    /// The client-visible name of a backend's own name.
    pub fn public_name(&self, index: usize, name: &str) -> String {
        match (self.prefixed, self.backends.get(index)) {
            (true, Some(b)) => format!("{}{PREFIX_SEPARATOR}{name}", b.name()),
            _ => name.to_owned(),
        }
    }

    /// Splits a client-visible tool name into (backend index, the server's
    /// own name), undoing the backend's curation: a renamed tool answers to
    /// its new name only, a curated-away tool to none.
    pub fn resolve_tool(&self, name: &str) -> Option<(usize, String)> {
        let (index, public) = self.resolve_name(name)?;
        let own = self.backends.get(index)?.config.tools.own_name(public)?;
        Some((index, own))
    }
}
