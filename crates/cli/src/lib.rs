//! Assembles Tenantry services into one running process (a *node*): the embedded default runs
//! every service behind one port; production runs one service per process. The binary in
//! `main.rs` is only the command line around this.

pub mod memory;
pub mod node;

pub use node::{EventsSpec, Node, NodeError, NodeSpec, PeerUrls, ServiceKind};
