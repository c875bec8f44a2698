// Compiles Token.sol with solc-js (the version pinned in package.json) into build/Token.json ({abi, bytecode}) and
// build/Token.bin.hex (the creation bytecode as hex, no 0x). `node compile.js --update` also rewrites the committed
// Token.bin.hex, which `consort bench --workload erc20` embeds; tests/evm_tooling.rs checks a fresh compile matches it.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const input = {
  language: "Solidity",
  sources: { "Token.sol": { content: fs.readFileSync(path.join(here, "Token.sol"), "utf8") } },
  settings: {
    // Fixed so that the bytes do not depend on the compiler's default target or on comments in the source; paris
    // (no PUSH0, no MCOPY) runs on any EVM since the merge.
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { Token: ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) {
  console.error(e.formattedMessage);
}
if (errors.length > 0) {
  process.exit(1);
}
const token = output.contracts["Token.sol"].Token;
const bytecode = token.evm.bytecode.object;
if (!/^[0-9a-f]+$/.test(bytecode)) {
  console.error("solc produced no bytecode for Token");
  process.exit(1);
}
const build = path.join(here, "build");
fs.mkdirSync(build, { recursive: true });
fs.writeFileSync(
  path.join(build, "Token.json"),
  JSON.stringify({ compiler: solc.version(), abi: token.abi, bytecode: "0x" + bytecode }, null, 2) + "\n",
);
fs.writeFileSync(path.join(build, "Token.bin.hex"), bytecode + "\n");
if (process.argv.includes("--update")) {
  fs.writeFileSync(path.join(here, "Token.bin.hex"), bytecode + "\n");
}
console.log(`compiled Token with solc ${solc.version()}: ${bytecode.length / 2} bytes of creation code`);
