"""The ERC-20 token on Consort's EVM app, driven by unmodified web3.py (and eth-account for local signing): deploys
build/Token.json (run compile.js first) from a fresh account, transfers with EIP-1559 and EIP-2930 transactions,
checks balances on the primary and on a backup, reads the Transfer logs through eth_getLogs (block range, address,
topics) and checks that reverts surface their reason strings.

    python web3_token.py --url https://127.0.0.1:8000 [--url https://127.0.0.1:8001 ...] \\
        --ca workspace/sandbox/service_cert.pem --cert workspace/sandbox/user0_cert.pem \\
        --key workspace/sandbox/user0_privk.pem

The first --url gets transactions first; the others (backups) get reads and a transaction too. Consort authenticates
JSON-RPC callers by their TLS client certificate (a registered user), which the HTTP provider presents. Exits
non-zero with a message on the first mismatch; prints one JSON line with what it did on success.
"""

import argparse
import json
import pathlib
import sys
import time

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

SUPPLY = 1_000_000 * 10**18
WAIT_S = 60


class Mismatch(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def expect_equal(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def connect(url, args):
    provider = Web3.HTTPProvider(
        url, request_kwargs={"cert": (args.cert, args.key), "verify": args.ca, "timeout": WAIT_S}
    )
    w3 = Web3(provider)
    check(w3.is_connected(), f"cannot reach {url}")
    return w3


def caught_up(w3, block):
    """Waits (bounded) until `w3`'s node has executed `block`."""
    deadline = time.monotonic() + WAIT_S
    while w3.eth.block_number < block:
        check(time.monotonic() < deadline, f"backup did not reach block {block} within {WAIT_S} s")
        time.sleep(0.05)


def send(w3, account, tx):
    """Signs `tx` locally, sends it through `w3` and waits (bounded) for its receipt."""
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    expect_equal(bytes(tx_hash), bytes(signed.hash), "transaction hash returned by eth_sendRawTransaction")
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=WAIT_S, poll_latency=0.05)


def expect_revert(f, reason, what):
    try:
        f()
    except ContractLogicError as e:
        check(reason in str(e), f"{what}: expected {reason!r} in the revert, got {e}")
        return
    raise Mismatch(f"{what}: did not revert")


def run(args):
    built = json.loads((pathlib.Path(__file__).parent / "build" / "Token.json").read_text())
    primary, *backups = [connect(u, args) for u in args.url]
    backup = backups[0] if backups else primary
    chain_id = primary.eth.chain_id
    expect_equal(backup.eth.chain_id, chain_id, "chain id on the backup")
    deployer = Account.create()
    recipient = Account.create().address
    expect_equal(primary.eth.get_balance(deployer.address), 0, "a fresh account's ether balance")

    # Deploy: web3.py fills in the gas and the EIP-1559 fee fields from the node.
    factory = primary.eth.contract(abi=built["abi"], bytecode=built["bytecode"])
    tx = factory.constructor("Consort Token", "CST", SUPPLY).build_transaction(
        {"from": deployer.address, "nonce": 0, "chainId": chain_id}
    )
    deployed = send(primary, deployer, tx)
    expect_equal(deployed.status, 1, "deployment receipt status")
    address = deployed.contractAddress
    check(len(primary.eth.get_code(address)) > 0, "no code at the token's address")
    token = primary.eth.contract(address=address, abi=built["abi"])
    expect_equal(token.functions.name().call(), "Consort Token", "name")
    expect_equal(token.functions.symbol().call(), "CST", "symbol")
    expect_equal(token.functions.decimals().call(), 18, "decimals")
    expect_equal(token.functions.totalSupply().call(), SUPPLY, "totalSupply")
    expect_equal(token.functions.balanceOf(deployer.address).call(), SUPPLY, "deployer's balance")

    # An EIP-1559 transfer through the primary.
    first = 777 * 10**15
    tx = token.functions.transfer(recipient, first).build_transaction({"from": deployer.address, "nonce": 1})
    expect_equal(tx.get("type", 2) in (2, "0x2"), True, "web3.py builds an EIP-1559 transaction")
    r1 = send(primary, deployer, tx)
    expect_equal(r1.status, 1, "first transfer's status")
    events = token.events.Transfer().process_receipt(r1)
    expect_equal(len(events), 1, "Transfer events in the first transfer's receipt")
    expect_equal((events[0].args.to, events[0].args.value), (recipient, first), "Transfer event")

    # An EIP-2930 transfer (gas price and access list) through a backup, which forwards it.
    caught_up(backup, r1.blockNumber)
    expect_equal(backup.eth.get_transaction_count(deployer.address), 2, "deployer's nonce on the backup")
    second = 99
    via_backup = backup.eth.contract(address=address, abi=built["abi"])
    tx = via_backup.functions.transfer(recipient, second).build_transaction(
        {
            "from": deployer.address,
            "nonce": 2,
            "type": 1,
            "gasPrice": backup.eth.gas_price,
            "accessList": [{"address": address, "storageKeys": []}],
        }
    )
    # An access list costs 2,400 gas per address before execution (EIP-2930): an estimate must include it.
    plain = via_backup.functions.transfer(recipient, second).estimate_gas({"from": deployer.address})
    check(
        tx["gas"] >= plain + 2400,
        f"eth_estimateGas ignored the access list: {tx['gas']} with it, {plain} without (EIP-2930 adds 2400)",
    )
    r2 = send(backup, deployer, tx)
    expect_equal(r2.status, 1, "second transfer's status (EIP-2930, sent to a backup)")
    expect_equal(int(backup.eth.get_transaction(r2.transactionHash)["type"]), 1, "second transaction's type")
    caught_up(backup, r2.blockNumber)
    for name, w3 in (("primary", primary), ("backup", backup)):
        t = w3.eth.contract(address=address, abi=built["abi"])
        expect_equal(t.functions.balanceOf(recipient).call(), first + second, f"recipient's balance on the {name}")
        expect_equal(
            t.functions.balanceOf(deployer.address).call(), SUPPLY - first - second, f"deployer's balance on the {name}"
        )
        expect_equal(w3.eth.get_transaction_count(deployer.address), 3, f"deployer's nonce on the {name}")

    # The Transfer logs through eth_getLogs: by block range, address and topics.
    logs = token.events.Transfer().get_logs(
        from_block=deployed.blockNumber, to_block=r2.blockNumber, argument_filters={"to": recipient}
    )
    expect_equal([l.args.value for l in logs], [first, second], "values of the Transfer logs to the recipient")
    expect_equal(bytes(logs[1].transactionHash), bytes(r2.transactionHash), "second log's transaction hash")
    topic = Web3.keccak(text="Transfer(address,address,uint256)")
    to_topic = "0x" + "00" * 12 + recipient[2:].lower()
    for name, w3 in (("primary", primary), ("backup", backup)):
        raw = w3.eth.get_logs(
            {
                "address": address,
                "fromBlock": deployed.blockNumber,
                "toBlock": r2.blockNumber,
                "topics": [topic, None, to_topic],
            }
        )
        expect_equal(len(raw), 2, f"raw Transfer logs to the recipient on the {name}")
    minted = primary.eth.get_logs(
        {"address": address, "fromBlock": deployed.blockNumber, "toBlock": deployed.blockNumber, "topics": [topic, "0x" + "00" * 32]}
    )
    expect_equal(len(minted), 1, "the constructor's Transfer from the zero address")
    none = primary.eth.get_logs({"address": address, "fromBlock": r1.blockNumber, "toBlock": r1.blockNumber, "topics": [to_topic]})
    expect_equal(len(none), 0, "logs whose first topic is the recipient")

    # Reverts: the reason string reaches the caller, on the primary and on a backup.
    for name, t in (("primary", token), ("backup", via_backup)):
        expect_revert(
            lambda: t.functions.transfer(recipient, SUPPLY).call({"from": deployer.address}),
            "insufficient balance",
            f"eth_call revert on the {name}",
        )
    expect_revert(
        lambda: token.functions.transfer(recipient, SUPPLY).estimate_gas({"from": deployer.address}),
        "insufficient balance",
        "eth_estimateGas revert",
    )
    expect_revert(
        lambda: token.functions.mint(recipient, 1).call({"from": recipient}),
        "only the owner mints",
        "mint by another account",
    )
    # A reverting transaction mined anyway: status 0, nothing moved, the nonce used.
    tx = token.functions.transfer(recipient, SUPPLY).build_transaction(
        {"from": deployer.address, "nonce": 3, "gas": 100_000}
    )
    bad = send(primary, deployer, tx)
    expect_equal(bad.status, 0, "mined revert's status")
    expect_equal(token.functions.balanceOf(recipient).call(), first + second, "recipient's balance after the revert")
    expect_equal(primary.eth.get_transaction_count(deployer.address), 4, "deployer's nonce after the mined revert")

    print(json.dumps({"ok": True, "chainId": chain_id, "token": address, "recipient": recipient}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True, help="JSON-RPC URL (first: primary)")
    parser.add_argument("--ca", required=True, help="the service certificate (PEM)")
    parser.add_argument("--cert", required=True, help="a Consort user's certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    args = parser.parse_args()
    try:
        run(args)
    except Mismatch as e:
        sys.exit(f"web3_token.py: FAILED: {e}")


if __name__ == "__main__":
    main()
