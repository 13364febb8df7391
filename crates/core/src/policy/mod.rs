//! The policy: what a request must satisfy before any sandbox is made for it, as pure
//! functions of plain data, called by every front end and both backends.
//!
//! * [`admission`] — [`admission::admit`]: the rules every request meets on every backend,
//!   and the defaults the server fills in.
//! * [`workspace`] — local workspaces (Docker): system directories, sockets, devices, `.git`
//!   outside the workspace; [`workspace::inspect_workspace`] gathers the facts.
//! * [`cluster`] — what a CodexRun may reference: Secrets from an allowlist, its tenant's
//!   PersistentVolumeClaims.
//! * [`source`] — remote sources (Kubernetes): a git URL or a PersistentVolumeClaim.
//! * [`roots`] — where a local workspace may be: allowed roots, client roots, and the
//!   orchestrator's own directories, which are never part of a workspace.
//! * [`tenant`] — who a gateway request acts for, and its own roots.
//! * [`quota`] — a gateway tenant's quotas: concurrent runs and tokens per day.
//! * [`approval`] — whether a model-set flag approves a patch apply or a `full_access` run,
//!   or a human must be asked.

pub mod admission;
pub mod approval;
pub mod cluster;
pub mod quota;
pub mod roots;
pub mod source;
pub mod tenant;
pub mod workspace;
