// The ERC-20 token on Consort's EVM app, driven by unmodified ethers v6: deploys build/Token.json (run compile.js
// first) from a fresh account, transfers, checks balances on the primary and on a backup, reads the Transfer logs
// through eth_getLogs (block range, address, topics), and checks that reverts surface their reason strings.
//
//   node ethers_token.js --url https://127.0.0.1:8000 [--url https://127.0.0.1:8001 ...] \
//     --ca workspace/sandbox/service_cert.pem --cert workspace/sandbox/user0_cert.pem \
//     --key workspace/sandbox/user0_privk.pem
//
// The first --url is where transactions go first; the others (backups) get reads and a transaction too. Consort
// authenticates JSON-RPC callers by their TLS client certificate (a registered user), hence the HTTPS agent.
// Exits non-zero with a message on the first mismatch; prints one JSON line with what it did on success.
"use strict";
const fs = require("fs");
const https = require("https");
const path = require("path");
const { ethers } = require("ethers");

const SUPPLY = 1_000_000n * 10n ** 18n;
const WAIT_MS = 60_000;

function parseArgs(argv) {
  const args = { urls: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${flag} needs a value`);
    if (flag === "--url") args.urls.push(value);
    else if (flag === "--ca" || flag === "--cert" || flag === "--key") args[flag.slice(2)] = value;
    else fail(`unknown argument ${flag}`);
  }
  if (args.urls.length === 0 || !args.ca || !args.cert || !args.key) {
    fail("usage: node ethers_token.js --url URL [--url URL ...] --ca CA.pem --cert USER_cert.pem --key USER_privk.pem");
  }
  return args;
}

function fail(message) {
  console.error(`ethers_token.js: FAILED: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function expectEqual(actual, expected, what) {
  check(actual === expected, `${what}: expected ${expected}, got ${actual}`);
}

/// A provider for `url` whose HTTPS requests present the user's client certificate and trust the service CA.
function provider(url, tls) {
  const request = new ethers.FetchRequest(url);
  if (url.startsWith("https:")) {
    request.getUrlFunc = ethers.FetchRequest.createGetUrlFunc({ agent: new https.Agent({ ...tls, keepAlive: true }) });
  }
  request.timeout = WAIT_MS;
  // cacheTimeout -1: no reuse of an identical answer for 250 ms (ethers' default), which would hand out a nonce
  // again when a transaction is included within that time, as it is here.
  const p = new ethers.JsonRpcProvider(request, undefined, { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1 });
  p.pollingInterval = 100;
  return p;
}

/// Waits (bounded) until `p` has executed block `block`, so that its reads include that transaction.
async function caughtUp(p, block) {
  const deadline = Date.now() + WAIT_MS;
  while ((await p.getBlockNumber()) < block) {
    check(Date.now() < deadline, `backup did not reach block ${block} within ${WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Runs `f`, which must fail with ethers error `code` whose reason (or message) contains `reason`.
async function expectError(f, code, reason, what) {
  try {
    await f();
  } catch (e) {
    const text = `${e.reason ?? ""} ${e.shortMessage ?? ""} ${e.message ?? ""}`;
    check(e.code === code, `${what}: expected ${code}, got ${e.code}: ${text}`);
    check(text.includes(reason), `${what}: expected "${reason}" in the error, got: ${text}`);
    return e;
  }
  fail(`${what}: succeeded, expected ${code} ("${reason}")`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tls = { ca: fs.readFileSync(args.ca), cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) };
  const built = JSON.parse(fs.readFileSync(path.join(__dirname, "build", "Token.json"), "utf8"));
  const [primary, ...backups] = args.urls.map((u) => provider(u, tls));
  const backup = backups[0] ?? primary;

  const network = await primary.send("eth_chainId", []);
  const chainId = BigInt(network);
  expectEqual(BigInt(await backup.send("eth_chainId", [])), chainId, "chain id on the backup");
  const deployer = ethers.Wallet.createRandom().connect(primary);
  const recipient = ethers.Wallet.createRandom().address;
  expectEqual(await primary.getBalance(deployer.address), 0n, "a fresh account's ether balance");

  // Deploy: ethers picks the fee fields from the node (gas price 0 on the sandbox's private chain).
  const factory = new ethers.ContractFactory(built.abi, built.bytecode, deployer);
  const token = await factory.deploy("Consort Token", "CST", SUPPLY);
  const deployed = await token.deploymentTransaction().wait(1, WAIT_MS);
  expectEqual(deployed.status, 1, "deployment receipt status");
  const address = await token.getAddress();
  expectEqual(deployed.contractAddress, address, "receipt's contract address");
  check((await primary.getCode(address)).length > 2, "no code at the token's address");
  expectEqual(await token.name(), "Consort Token", "name");
  expectEqual(await token.symbol(), "CST", "symbol");
  expectEqual(await token.decimals(), 18n, "decimals");
  expectEqual(await token.totalSupply(), SUPPLY, "totalSupply");
  expectEqual(await token.balanceOf(deployer.address), SUPPLY, "deployer's balance");

  // Two transfers: one sent to the primary, one to a backup (which forwards it).
  const first = 1234n * 10n ** 15n;
  const tx1 = await token.transfer(recipient, first);
  const r1 = await tx1.wait(1, WAIT_MS);
  expectEqual(r1.status, 1, "first transfer's status");
  const parsed = r1.logs.map((l) => token.interface.parseLog(l)).filter((l) => l && l.name === "Transfer");
  expectEqual(parsed.length, 1, "Transfer events in the first transfer's receipt");
  expectEqual(parsed[0].args.to, recipient, "Transfer event's recipient");
  expectEqual(parsed[0].args.value, first, "Transfer event's value");

  await caughtUp(backup, r1.blockNumber);
  const second = 42n;
  const nonce = await backup.getTransactionCount(deployer.address);
  expectEqual(nonce, 2, "deployer's nonce on the backup after a deployment and a transfer");
  const viaBackup = token.connect(deployer.connect(backup));
  const tx2 = await viaBackup.transfer(recipient, second, { nonce });
  const r2 = await tx2.wait(1, WAIT_MS);
  expectEqual(r2.status, 1, "second transfer's status (sent to a backup)");
  await caughtUp(backup, r2.blockNumber);
  for (const [name, p] of [["primary", primary], ["backup", backup]]) {
    const t = token.connect(p);
    expectEqual(await t.balanceOf(recipient), first + second, `recipient's balance on the ${name}`);
    expectEqual(await t.balanceOf(deployer.address), SUPPLY - first - second, `deployer's balance on the ${name}`);
    expectEqual(await p.getTransactionCount(deployer.address), 3, `deployer's nonce on the ${name}`);
  }

  // The Transfer logs through eth_getLogs: by block range, address and topics.
  const toRecipient = token.filters.Transfer(null, recipient);
  const logs = await token.queryFilter(toRecipient, deployed.blockNumber, r2.blockNumber);
  expectEqual(logs.length, 2, "Transfer logs to the recipient");
  expectEqual(logs[0].args.value, first, "first log's value");
  expectEqual(logs[1].args.value, second, "second log's value");
  expectEqual(logs[1].transactionHash, tx2.hash, "second log's transaction hash");
  const mint = await token.queryFilter(token.filters.Transfer(ethers.ZeroAddress), deployed.blockNumber, deployed.blockNumber);
  expectEqual(mint.length, 1, "the constructor's Transfer from the zero address");
  expectEqual(mint[0].args.value, SUPPLY, "the constructor's Transfer value");
  const onlyFirst = await primary.getLogs({ address, fromBlock: r1.blockNumber, toBlock: r1.blockNumber });
  expectEqual(onlyFirst.length, 1, "logs of the first transfer's block alone");
  const elsewhere = await primary.getLogs({ address: recipient, fromBlock: deployed.blockNumber, toBlock: r2.blockNumber });
  expectEqual(elsewhere.length, 0, "logs of an address that emitted none");
  const topics = await toRecipient.getTopicFilter();
  const onBackup = await backup.getLogs({ address, topics, fromBlock: deployed.blockNumber, toBlock: r2.blockNumber });
  expectEqual(onBackup.length, 2, "Transfer logs to the recipient, read on the backup");

  // Reverts: the reason string reaches the caller from eth_call and eth_estimateGas, on the primary and a backup.
  await expectError(() => token.transfer.staticCall(recipient, SUPPLY), "CALL_EXCEPTION", "insufficient balance", "eth_call revert");
  await expectError(() => viaBackup.transfer.staticCall(recipient, SUPPLY), "CALL_EXCEPTION", "insufficient balance", "eth_call revert on the backup");
  await expectError(() => token.transfer(recipient, SUPPLY), "CALL_EXCEPTION", "insufficient balance", "transfer beyond the balance");
  await expectError(() => token.transferFrom(recipient, deployer.address, 1n), "CALL_EXCEPTION", "insufficient allowance", "transferFrom without allowance");
  await expectError(() => token.connect(primary).mint.staticCall(recipient, 1n, { from: recipient }), "CALL_EXCEPTION", "only the owner mints", "mint by another account");
  // A reverting transaction mined anyway (its gas limit given, so no estimate stops it): status 0, nothing moved.
  const bad = await token.transfer(recipient, SUPPLY, { gasLimit: 100_000n });
  const failed = await expectError(() => bad.wait(1, WAIT_MS), "CALL_EXCEPTION", "", "mined revert");
  expectEqual(failed.receipt?.status, 0, "mined revert's receipt status");
  expectEqual(await token.balanceOf(recipient), first + second, "recipient's balance after the revert");
  expectEqual(await primary.getTransactionCount(deployer.address), 4, "deployer's nonce after the mined revert");

  // Approve and transferFrom, with the Approval event.
  const spender = ethers.Wallet.createRandom().connect(primary);
  const ra = await (await token.approve(spender.address, 500n)).wait(1, WAIT_MS);
  const approval = ra.logs.map((l) => token.interface.parseLog(l)).find((l) => l && l.name === "Approval");
  check(approval && approval.args.value === 500n, "Approval event with the approved value");
  expectEqual(await token.allowance(deployer.address, spender.address), 500n, "allowance");
  const rf = await (await token.connect(spender).transferFrom(deployer.address, recipient, 300n)).wait(1, WAIT_MS);
  expectEqual(rf.status, 1, "transferFrom's status");
  expectEqual(await token.allowance(deployer.address, spender.address), 200n, "allowance after transferFrom");
  expectEqual(await token.balanceOf(recipient), first + second + 300n, "recipient's balance after transferFrom");

  // A reused nonce is refused with the message ethers classifies.
  await expectError(() => token.transfer(recipient, 1n, { nonce: 0 }), "NONCE_EXPIRED", "nonce", "reused nonce");

  console.log(JSON.stringify({ ok: true, chainId: chainId.toString(), token: address, recipient,
    blocks: [deployed.blockNumber, r1.blockNumber, r2.blockNumber] }));
  for (const p of [primary, ...backups]) p.destroy();
}

main().catch((e) => fail(e.stack || String(e)));
