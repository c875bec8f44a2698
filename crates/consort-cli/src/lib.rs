//! The parts of the `consort` command that other programs and tests call as functions (the command itself is
//! `main.rs`): for now the member side of disaster recovery, [`recovery_share`].
#![forbid(unsafe_code)]

pub mod recovery_share;
