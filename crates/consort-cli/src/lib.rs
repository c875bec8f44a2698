//! The parts of the `consort` command that other programs and tests call as functions (the command itself is
//! `main.rs`): the member side of disaster recovery, [`recovery_share`], and JavaScript app bundles, [`js_bundle`].
#![forbid(unsafe_code)]

pub mod js_bundle;
pub mod recovery_share;
