//! The network: TLS configuration, the HTTPS server, node-to-node channels, forwarding of requests to the primary,
//! and the HTTPS client Consort's own tools use. Nothing here interprets a request; the endpoints do ([`crate::api`]).

pub mod channels;
pub mod client;
pub mod forwarding;
pub mod http;
pub mod tls;
