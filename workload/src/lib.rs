//! signalfd-workload: calls `signalfd` and `signalfd4` in named scenarios (varied masks, flags,
//! updates, errors, threads, a seeded random mix) and records every call in a JSON-lines
//! manifest, so tests can demand that the agent saw each of them and nothing else.
//!
//! The process makes no signalfd/signalfd4 calls besides the recorded ones (except `bench`,
//! which records nothing). Each fd a call returns is proven to deliver a signal of its mask.

pub mod bench;
mod call;
mod config;
mod error;
pub mod manifest;
mod mask;
mod midflight;
mod pace;
mod proof;
mod record;
mod run;
mod scenario;
mod sys;
mod uffd;
pub mod wait;

#[cfg(test)]
mod test_support;

pub use config::{HeldCalls, RunConfig};
pub use error::WorkloadError;
pub use manifest::read_manifest;
pub use record::RunSummary;
pub use run::{run, run_gated};
pub use scenario::Scenario;
pub use sys::{cgroup2_mount, cgroup_path};
