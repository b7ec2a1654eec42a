//! Integration tests: one binary, one module per area (ripgrep `tests/tests.rs`).
//! Area modules live in `tests/integration/`, named by `#[path]` so cargo does
//! not also build each of them as a test binary of its own.

mod util;

#[path = "integration/interop_direct.rs"]
mod interop_direct;

#[path = "integration/protocol.rs"]
mod protocol;

#[path = "integration/sessions.rs"]
mod sessions;

#[path = "integration/interop_gateway.rs"]
mod interop_gateway;

#[path = "integration/cli.rs"]
mod cli;

#[path = "integration/backends.rs"]
mod backends;

#[path = "integration/front_doors.rs"]
mod front_doors;

#[path = "integration/auth.rs"]
mod auth;

#[path = "integration/aggregate.rs"]
mod aggregate;
#[path = "integration/authz.rs"]
mod authz;
#[path = "integration/observe.rs"]
mod observe;
#[path = "integration/record_replay.rs"]
mod record_replay;
#[path = "integration/scale_out.rs"]
mod scale_out;
