//! Names and keys of the governance tables, spelled as CCF spells them.
//!
//! Keys are entity ids (member, user, node, proposal ids) as UTF-8 strings; singleton tables use
//! [`SINGLETON_KEY`]. Values are JSON, except certificates and encryption keys (raw PEM bytes), the proposal
//! bodies in [`PROPOSALS`] (the raw signed payload) and [`COSE_HISTORY`] (the raw COSE Sign1 envelope).

/// Member certificates, raw PEM bytes keyed by member id.
pub const MEMBERS_CERTS: &str = "public:ccf.gov.members.certs";
/// Member information, JSON [`crate::MemberInfo`].
pub const MEMBERS_INFO: &str = "public:ccf.gov.members.info";
/// Members' RSA recovery-share encryption public keys, raw PEM bytes.
pub const MEMBERS_ENCRYPTION_PUBLIC_KEYS: &str = "public:ccf.gov.members.encryption_public_keys";
/// The state digest each member must sign to become active, JSON [`crate::MemberAck`].
pub const MEMBERS_ACKS: &str = "public:ccf.gov.members.acks";
/// User certificates, raw PEM bytes keyed by user id.
pub const USERS_CERTS: &str = "public:ccf.gov.users.certs";
/// User information, JSON `{"user_data": ...}`.
pub const USERS_INFO: &str = "public:ccf.gov.users.info";
/// Node information, JSON (status, node_data, ...), written by the node and by governance.
pub const NODES_INFO: &str = "public:ccf.gov.nodes.info";
/// Endorsed node certificates, raw PEM bytes keyed by node id.
pub const NODES_ENDORSED_CERTIFICATES: &str = "public:ccf.gov.nodes.endorsed_certificates";
/// Code ids (measurements) of nodes allowed to join, JSON `"AllowedToJoin"`.
pub const NODES_CODE_IDS: &str = "public:ccf.gov.nodes.code_ids";
/// SEV-SNP measurements allowed to join, JSON `"AllowedToJoin"`.
pub const NODES_SNP_MEASUREMENTS: &str = "public:ccf.gov.nodes.snp.measurements";
/// SEV-SNP host data (security policy digests) allowed to join, JSON security policy string.
pub const NODES_SNP_HOST_DATA: &str = "public:ccf.gov.nodes.snp.host_data";
/// Minimum SEV-SNP TCB version per CPU model, keyed by CPUID as lowercase hex (`"00a00f11"` is Milan), JSON
/// `{"boot_loader", "tee", "snp", "microcode"}` with an optional `"fmc"` (Turin) and `"hexstring"` (the TCB as AMD
/// prints it, when set from one). A joiner whose model has no entry is refused, as in CCF 6.
pub const NODES_SNP_TCB_VERSIONS: &str = "public:ccf.gov.nodes.snp.tcb_versions";
/// The constitution: a JSON string holding the JS module source, at [`SINGLETON_KEY`].
pub const CONSTITUTION: &str = "public:ccf.gov.constitution";
/// Proposal bodies (raw signed payload bytes) keyed by proposal id.
pub const PROPOSALS: &str = "public:ccf.gov.proposals";
/// Proposal state, ballots and outcome, JSON [`crate::ProposalInfo`] keyed by proposal id.
pub const PROPOSALS_INFO: &str = "public:ccf.gov.proposals_info";
/// Replay window of recent proposals: key `"<created_at, 10 digits>:<hex SHA-256 of the COSE Sig_structure>"`
/// (CCF hashes the signature instead, which a replayer can re-encode; see [`crate::VerifiedRequest::signed_digest`]),
/// value the proposal id as a JSON string.
pub const COSE_RECENT_PROPOSALS: &str = "public:ccf.gov.cose_recent_proposals";
/// The last governance request of each member: raw COSE Sign1 bytes keyed by member id.
pub const COSE_HISTORY: &str = "public:ccf.gov.cose_history";
/// Service information (cert, status, ...), JSON at [`SINGLETON_KEY`]. Written by the node.
pub const SERVICE_INFO: &str = "public:ccf.gov.service.info";
/// Service configuration (recovery_threshold, recent_cose_proposals_window_size, ...), JSON at [`SINGLETON_KEY`].
pub const SERVICE_CONFIG: &str = "public:ccf.gov.service.config";
/// The node's signature table, read by the constitution for the current state digest.
pub const INTERNAL_SIGNATURES: &str = "public:ccf.internal.signatures";

/// Key of the only entry of singleton tables (CCF's `getSingletonKvKey()`: 8 zero bytes).
pub const SINGLETON_KEY: [u8; 8] = [0u8; 8];

/// Prefix of the maps a constitution's `apply` may write.
pub const GOV_MAP_PREFIX: &str = "public:ccf.gov.";

/// JS application modules: raw UTF-8 source keyed by the module name with a leading "/" (`"/endpoints/all.js"`).
pub const MODULES: &str = "public:ccf.gov.modules";
/// JS application endpoints: key JSON `{"uri_path": "/records/{id}", "verb": "GET"}` (see
/// [`crate::endpoint_key`]), value JSON of CCF's endpoint properties (`js_module`, `js_function`, `mode`,
/// `authn_policies`, `forwarding_required`, `openapi`, `openapi_hidden`, ...).
pub const ENDPOINTS: &str = "public:ccf.gov.endpoints";
/// CCF's compiled-module cache. Consort keeps none; governance clears it whenever the application changes.
pub const MODULES_QUICKJS_BYTECODE: &str = "public:ccf.gov.modules_quickjs_bytecode";
/// The QuickJS version CCF's bytecode cache was built with (singleton, JSON string).
pub const MODULES_QUICKJS_VERSION: &str = "public:ccf.gov.modules_quickjs_version";
/// JSON `true` at [`SINGLETON_KEY`] once the application changed: nodes drop cached interpreters.
pub const INTERPRETER_FLUSH: &str = "public:ccf.gov.interpreter.flush";
/// JS runtime limits of applications, JSON `{"max_heap_bytes", "max_stack_bytes", "max_execution_time_ms",
/// "log_exception_details", "return_exception_details", "max_cached_interpreters"}` at [`SINGLETON_KEY`].
pub const JS_RUNTIME_OPTIONS: &str = "public:ccf.gov.js_runtime_options";
/// The EVM app's configuration (`set_evm_config`; read by consort-evm), JSON at the singleton key.
pub const EVM_CONFIG: &str = "public:ccf.gov.evm.config";
/// JWT issuers: key the issuer string, value JSON `{"auto_refresh": bool, "ca_cert_bundle_name": string|null}`
/// (CCF's constitution may store other fields of the proposal beside these, and may leave `auto_refresh` out).
pub const JWT_ISSUERS: &str = "public:ccf.gov.jwt.issuers";
/// JWT signing keys: key the JWK `kid`, value JSON array of `{"issuer", "public_key" (PEM SubjectPublicKeyInfo),
/// "constraint" (string or null)}`, one entry per issuer that published the kid.
pub const JWT_PUBLIC_SIGNING_KEYS_METADATA: &str = "public:ccf.gov.jwt.public_signing_keys_metadata";
/// CA certificate bundles: key the bundle name, value the PEM bundle (Consort's constitution stores it raw; CCF's
/// stores it as a JSON string, see [`crate::ca_cert_bundle_pem`]).
pub const CA_CERT_BUNDLES: &str = "public:ccf.gov.tls.ca_cert_bundles";
