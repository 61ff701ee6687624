//! The end-to-end suite: one test binary, so the whole cluster is compiled into and linked
//! with one executable instead of one per file. Each former test binary is a module here; run
//! one with its module path as the filter, e.g. `cargo test -p tenantry-e2e --test e2e races::`.
//!
//! The tests share one process. Two of them need a process-wide tracing subscriber
//! (`secrets_in_logs`, `traces`): they run alone in a child process of this binary (see
//! [`tenantry_e2e::in_own_process`]). The fault tests, which stop this machine's PostgreSQL
//! and RabbitMQ, stay a binary of their own (`tests/tests/faults.rs`): see the note there.

mod access_governance;
mod audit_trail;
mod authz_matrix;
mod bad_input;
mod bad_input_corpus;
mod edge_limits;
mod event_delivery;
mod invitation_batch;
mod invitation_browser;
mod invitation_decline;
mod invitation_page;
mod invitation_reminder;
mod invitations;
mod member_expiry;
mod messages;
mod metrics;
mod operations;
mod races;
mod refusals;
mod revocation;
mod secrets;
mod secrets_in_logs;
mod seed_flow;
mod traces;
