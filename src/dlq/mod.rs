//! The operators' view of dead letters: the broker-neutral record model the `seawall dlq`
//! commands (`list`, `show`, `groups`, `replay`, `release`) work on.
//!
//! A [`DlqRecord`] is one message read back from a dead-letter topic or queue, with the
//! failure parsed from its headers. Seawall's own `seawall.*` headers are read, and so are
//! Spring Kafka's `kafka_dlt-*` and Kafka Connect's `__connect.errors.*` headers, so one
//! tool serves a mixed estate. Parsing never fails: what the headers do not say stays
//! unknown. [`fingerprint`](fn@fingerprint) and [`group`](fn@group) gather records by
//! cause, [`DlqFilter`] selects them, and [`replay_order`] puts a selection in the order a
//! replay must send it.
//! See `docs/dlq.md`.

mod filter;
mod fingerprint;
mod formats;
mod group;
mod ledger;
mod order;
mod plan;
mod record;
mod replay;

pub use filter::DlqFilter;
pub use fingerprint::fingerprint;
pub use group::{group, DlqGroup};
pub use ledger::{append_audit, AuditEntry, ReplayLedger};
pub use order::replay_order;
pub use plan::{plan_replay, PlanOptions, Refusal, Replay, ReplayPlan};
pub use record::{DlqFailure, DlqFormat, DlqRecord, ReplayError, UNKNOWN_KIND};
pub use replay::{
    run_replay, BackendError, CanaryOutcome, Progress, ReplayBackend, ReplayEnd, ReplayRunError,
    ReplaySettings, ReplaySummary, Sent,
};
