//! The named limits of the EVM app: batch sizes, transaction sizes, gas and scans.

/// Most requests in one JSON-RPC batch (ethers v6 batches up to 100 by default).
pub const MAX_BATCH_REQUESTS: usize = 100;
/// Largest raw transaction accepted by `eth_sendRawTransaction`, in bytes (geth's pool takes 128 KiB).
pub const MAX_RAW_TX_BYTES: usize = 128 * 1024;
/// Gas limit of every block; also the cap of one transaction, `eth_call` and `eth_estimateGas`.
pub const BLOCK_GAS_LIMIT: u64 = 30_000_000;
/// Most stored EVM transactions one `eth_getLogs` or `eth_getBlockByNumber`/`ByHash` looks at (it scans the
/// transactions map: there is no index by block); over it the query fails with -32005.
pub const MAX_SCANNED_TRANSACTIONS: usize = 200_000;
/// Most logs one `eth_getLogs` returns; over it the query fails with -32005 (narrow the range).
pub const MAX_RETURNED_LOGS: usize = 10_000;
/// Most addresses or topics alternatives in one log filter.
pub const MAX_FILTER_ITEMS: usize = 1_000;
/// Most blocks `eth_feeHistory` describes.
pub const MAX_FEE_HISTORY_BLOCKS: u64 = 1_024;
/// Most genesis balances one `set_evm_config` may credit.
pub const MAX_GENESIS_ACCOUNTS: usize = 10_000;
/// Most bytecodes kept analysed in a [`crate::CodeCache`].
pub const MAX_CACHED_CODES: usize = 1_024;
/// Most reward percentiles one `eth_feeHistory` asks for (geth's limit).
pub const MAX_FEE_HISTORY_PERCENTILES: usize = 100;
/// Gas one request's `eth_call`s and `eth_estimateGas` searches may spend together (a batch shares it): five
/// calls at the block gas limit. A successful call is charged what it spent, a failed one its whole limit.
pub const MAX_CALL_GAS_PER_REQUEST: u64 = 5 * BLOCK_GAS_LIMIT;
/// Largest JSON-RPC response body, in bytes (geth's default for batch responses). A batch answers -32003
/// "response too large" for the request that would cross it and every request after it (those are not run), and
/// `eth_getLogs` stops collecting with -32005 once its logs would.
pub const MAX_RESPONSE_BYTES: usize = 25_000_000;
