//! Consort governance core.
#![forbid(unsafe_code)]

pub mod cose;
mod js;
mod error;
pub mod kv;
pub mod limits;
mod model;
pub mod tables;

pub use cose::{sign_gov_request, verify_gov_request, MsgType, VerifiedRequest};
pub use error::GovError;
pub use kv::KvRead;
pub use model::*;
pub use js::{HostAction, JsEnv, TIMEOUT_REASON};
