//! The policy: what a request must satisfy before any sandbox is made for it, as pure
//! functions of plain data, called by every front end and both backends.
//!
//! * [`workspace`] — local workspaces (Docker): system directories, sockets, devices, `.git`
//!   outside the workspace; [`workspace::inspect_workspace`] gathers the facts.

pub mod workspace;
