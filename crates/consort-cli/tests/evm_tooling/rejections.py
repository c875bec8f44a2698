"""Transactions Consort's EVM app must refuse, and the marker transfer of the confidentiality check (run by
tests/evm_tooling.rs with the `ccf` venv, which also holds web3 and eth-account).

Deploys the example token from a fresh account and transfers --amount tokens to --recipient (values the test chose
to find again, or not, in the ledger and snapshot files). Then sends transactions with a bad signature (r = 0, and
the high-s twin of a valid signature), a wrong chain id, a reused nonce, a future nonce, and too little balance
(for the value, and for gas at a non-zero price): each must be refused with JSON-RPC code -32000 and geth's message,
leave the sender's balance and nonce and the token balances unchanged, and leave no transaction behind its hash.
Prints one JSON line with the markers (calldata, storage key) on success; exits non-zero with a message otherwise.
"""

import argparse
import json
import re
import sys

import rlp
from eth_account import Account
from web3 import Web3

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TX_REJECTED = -32000
# The Token's storage layout: name (0), symbol (1), totalSupply (2), balances (3), allowances (4).
BALANCES_SLOT = 3


class Mismatch(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def connect(url, args):
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"cert": (args.cert, args.key), "verify": args.ca, "timeout": 60}))
    check(w3.is_connected(), f"cannot reach {url}")
    return w3


def send_ok(w3, account, tx):
    signed = account.sign_transaction(tx)
    h = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.05)
    check(receipt.status == 1, f"transaction {h.hex()} failed: {receipt}")
    return receipt


def tamper(raw, change):
    """A legacy transaction's RLP with its (v, r, s) replaced by change(v, r, s)."""
    fields = rlp.decode(raw)
    v, r, s = (int.from_bytes(f, "big") for f in fields[6:9])
    v, r, s = change(v, r, s)
    as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
    return rlp.encode(fields[:6] + [as_bytes(v), as_bytes(r), as_bytes(s)])


def refused(w3, raw, pattern, what, state):
    """Sends `raw`; it must be refused with -32000 and a message matching `pattern`, and change nothing."""
    before = state()
    answer = w3.provider.make_request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
    error = answer.get("error")
    check(error is not None, f"{what}: accepted ({answer})")
    check(error.get("code") == TX_REJECTED, f"{what}: code {error.get('code')}, expected {TX_REJECTED}: {error}")
    check(re.search(pattern, error.get("message", ""), re.I), f"{what}: message {error.get('message')!r} !~ {pattern}")
    tx_hash = Web3.keccak(bytes(raw))
    lookup = w3.provider.make_request("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
    check(lookup.get("result") is None, f"{what}: the refused transaction is known: {lookup}")
    after = state()
    check(after == before, f"{what}: state changed from {before} to {after}")
    return error["message"]


def run(args):
    built = json.load(open(args.token_json))
    primary, backup = connect(args.url[0], args), connect(args.url[-1], args)
    chain_id = primary.eth.chain_id
    deployer = Account.create()
    recipient = Web3.to_checksum_address(args.recipient)
    factory = primary.eth.contract(abi=built["abi"], bytecode=built["bytecode"])
    tx = factory.constructor("Marker Token", "MRK", args.amount * 10).build_transaction(
        {"from": deployer.address, "nonce": 0, "chainId": chain_id}
    )
    address = send_ok(primary, deployer, tx).contractAddress
    token = primary.eth.contract(address=address, abi=built["abi"])
    transfer = token.functions.transfer(recipient, args.amount).build_transaction(
        {"from": deployer.address, "nonce": 1, "gas": 100_000, "gasPrice": 0, "chainId": chain_id}
    )
    send_ok(primary, deployer, transfer)
    check(token.functions.balanceOf(recipient).call() == args.amount, "the marker transfer did not arrive")
    slot = Web3.keccak(bytes(12) + bytes.fromhex(recipient[2:]) + BALANCES_SLOT.to_bytes(32, "big"))
    stored = primary.eth.get_storage_at(address, slot)
    check(int.from_bytes(stored, "big") == args.amount, f"eth_getStorageAt of the recipient's balance: {stored.hex()}")

    poor = Account.create()

    def state():
        return (
            primary.eth.get_balance(deployer.address),
            primary.eth.get_transaction_count(deployer.address),
            primary.eth.get_balance(poor.address),
            primary.eth.get_transaction_count(poor.address),
            token.functions.balanceOf(recipient).call(),
            token.functions.balanceOf(deployer.address).call(),
        )

    def signed(nonce, account=deployer, **over):
        tx = {
            "to": address,
            "data": token.encode_abi("transfer", args=[recipient, 5]),
            "nonce": nonce,
            "gas": 100_000,
            "gasPrice": 0,
            "value": 0,
            "chainId": chain_id,
        }
        tx.update(over)
        return account.sign_transaction(tx).raw_transaction

    messages = {}
    raw = signed(2)
    messages["r = 0"] = refused(primary, tamper(raw, lambda v, r, s: (v, 0, s)), r"invalid|sender|signature", "r = 0", state)
    # The same (r, n - s) with the other parity (EIP-155 v = 35 + 2 chain id + parity): valid ECDSA, refused by EIP-2.
    flip = lambda v, r, s: (v + 1 - 2 * ((v - 35) % 2), r, SECP256K1_N - s)
    messages["high s"] = refused(primary, tamper(raw, flip), r"invalid|sender|signature", "high s", state)
    messages["chain id"] = refused(primary, signed(2, chainId=chain_id + 1), r"chain ?id", "wrong chain id", state)
    messages["reused nonce"] = refused(primary, signed(1), r"nonce too low", "reused nonce", state)
    messages["reused nonce via backup"] = refused(backup, signed(0), r"nonce too low", "reused nonce via a backup", state)
    messages["future nonce"] = refused(primary, signed(3), r"nonce too high", "future nonce", state)
    value = dict(to=recipient, data=b"", value=1)
    messages["no funds for value"] = refused(primary, signed(0, poor, **value), r"insufficient funds", "value", state)
    gas = dict(gasPrice=1, gas=21_000, to=recipient, data=b"")
    messages["no funds for gas"] = refused(primary, signed(0, poor, **gas), r"insufficient funds", "gas", state)
    # The valid transaction the tampered ones came from still goes through: the refusals burnt no nonce.
    h = primary.eth.send_raw_transaction(raw)
    receipt = primary.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.05)
    check(receipt.status == 1, f"the untampered transaction failed: {receipt}")
    print(
        json.dumps(
            {
                "ok": True,
                "token": address,
                "calldata": transfer["data"][2:] if transfer["data"].startswith("0x") else transfer["data"],
                "storage_key": slot.hex().removeprefix("0x"),
                "messages": messages,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", action="append", required=True, help="JSON-RPC URLs: the primary, then a backup")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token-json", required=True, help="examples/erc20/build/Token.json")
    parser.add_argument("--recipient", required=True, help="the marker recipient (0x + 40 hex digits)")
    parser.add_argument("--amount", type=int, required=True, help="the marker amount")
    args = parser.parse_args()
    try:
        run(args)
    except Mismatch as e:
        sys.exit(f"rejections.py: FAILED: {e}")


if __name__ == "__main__":
    main()
