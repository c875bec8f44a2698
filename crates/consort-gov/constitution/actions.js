// Consort's default constitution, part 1 of 4: argument checks, KV helpers and the actions table.
// The four files are concatenated into one JS module (see consort_gov::DEFAULT_CONSTITUTION).

const SINGLETON = () => new ArrayBuffer(8);
const T = {
  memberCerts: "public:ccf.gov.members.certs",
  memberInfo: "public:ccf.gov.members.info",
  memberKeys: "public:ccf.gov.members.encryption_public_keys",
  memberAcks: "public:ccf.gov.members.acks",
  userCerts: "public:ccf.gov.users.certs",
  userInfo: "public:ccf.gov.users.info",
  nodeInfo: "public:ccf.gov.nodes.info",
  nodeCerts: "public:ccf.gov.nodes.endorsed_certificates",
  codeIds: "public:ccf.gov.nodes.code_ids",
  snpMeasurements: "public:ccf.gov.nodes.snp.measurements",
  snpHostData: "public:ccf.gov.nodes.snp.host_data",
  snpTcbVersions: "public:ccf.gov.nodes.snp.tcb_versions",
  constitution: "public:ccf.gov.constitution",
  proposalsInfo: "public:ccf.gov.proposals_info",
  serviceInfo: "public:ccf.gov.service.info",
  serviceConfig: "public:ccf.gov.service.config",
  history: "public:ccf.gov.cose_history",
  signatures: "public:ccf.internal.signatures",
  jsRuntimeOptions: "public:ccf.gov.js_runtime_options",
  jwtIssuers: "public:ccf.gov.jwt.issuers",
  caCertBundles: "public:ccf.gov.tls.ca_cert_bundles",
  evmConfig: "public:ccf.gov.evm.config",
};

function fail(message) {
  throw new Error(message);
}

function expectType(value, type, field) {
  const optional = type.endsWith("?");
  const base = optional ? type.slice(0, -1) : type;
  if (optional && (value === undefined || value === null)) return;
  const ok =
    base === "array"
      ? Array.isArray(value)
      : base === "integer"
        ? Number.isInteger(value)
        : base === "object"
          ? typeof value === "object" && value !== null && !Array.isArray(value)
          : typeof value === base;
  if (!ok) fail(`${field} must be of type ${type}, not ${JSON.stringify(value)}`);
}

function expectNoArgs(args) {
  if (args !== undefined && args !== null) fail("this action takes no arguments");
}

function expectId(value, field) {
  expectType(value, "string", field);
  if (!/^[0-9a-fA-F]{64}$/.test(value)) fail(`${field} must be 64 hexadecimal characters`);
}

function expectHex(value, field) {
  expectType(value, "string", field);
  if (value.length === 0 || value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value)) {
    fail(`${field} must be a non-empty even-length hexadecimal string`);
  }
}

function expectCerts(value, field) {
  expectType(value, "string", field);
  if (!ccf.crypto.isValidX509CertBundle(value)) fail(`${field} must be valid PEM X.509 certificate(s)`);
}

function getJson(table, key) {
  const raw = ccf.kv[table].get(key);
  return raw === undefined ? undefined : ccf.bufToJsonCompatible(raw);
}

function setJson(table, key, value) {
  ccf.kv[table].set(key, ccf.jsonCompatibleToBuf(value));
}

function activeRecoveryMemberCount() {
  let count = 0;
  ccf.kv[T.memberKeys].forEach((_, id) => {
    const info = getJson(T.memberInfo, id);
    if (info !== undefined && info.status === "Active") count++;
  });
  return count;
}

function serviceConfig() {
  return getJson(T.serviceConfig, SINGLETON()) ?? {};
}

function updateServiceConfig(changes) {
  const config = serviceConfig();
  let refreshShares = false;
  if (changes.recovery_threshold !== undefined && changes.recovery_threshold !== config.recovery_threshold) {
    const service = getJson(T.serviceInfo, SINGLETON());
    if (service !== undefined && service.status === "WaitingForRecoveryShares") {
      fail("cannot change the recovery threshold while the service waits for recovery shares");
    }
    if (service !== undefined && service.status === "Open") {
      const members = activeRecoveryMemberCount();
      if (changes.recovery_threshold > members) {
        fail(`recovery threshold ${changes.recovery_threshold} exceeds the ${members} active recovery members`);
      }
    }
    config.recovery_threshold = changes.recovery_threshold;
    refreshShares = true;
  }
  if (changes.reconfiguration_type !== undefined) config.reconfiguration_type = changes.reconfiguration_type;
  if (changes.recent_cose_proposals_window_size !== undefined) {
    config.recent_cose_proposals_window_size = changes.recent_cose_proposals_window_size;
  }
  if (changes.maximum_node_certificate_validity_days !== undefined) {
    config.maximum_node_certificate_validity_days = changes.maximum_node_certificate_validity_days;
  }
  if (changes.maximum_service_certificate_validity_days !== undefined) {
    config.maximum_service_certificate_validity_days = changes.maximum_service_certificate_validity_days;
  }
  setJson(T.serviceConfig, SINGLETON(), config);
  if (refreshShares) ccf.node.triggerRecoverySharesRefresh();
}

function setUserInfo(id, userData) {
  if (userData === undefined || userData === null) {
    ccf.kv[T.userInfo].delete(id);
  } else {
    setJson(T.userInfo, id, { user_data: userData });
  }
}

// Mark every other Open proposal Dropped: a new constitution changes what their votes mean.
function dropOtherOpenProposals(keepId) {
  const table = ccf.kv[T.proposalsInfo];
  table.forEach((raw, key) => {
    if (ccf.bufToStr(key) === keepId) return;
    const info = ccf.bufToJsonCompatible(raw);
    if (info.state === "Open") {
      info.state = "Dropped";
      table.set(key, ccf.jsonCompatibleToBuf(info));
    }
  });
}

function allowedToJoin(table, field) {
  return {
    validate: (args) => expectHex(args[field], field),
    apply: (args) => setJson(table, ccf.strToBuf(args[field].toLowerCase()), "AllowedToJoin"),
  };
}

function disallow(table, field) {
  return {
    validate: (args) => expectHex(args[field], field),
    apply: (args) => ccf.kv[table].delete(ccf.strToBuf(args[field].toLowerCase())),
  };
}

// CCF keys the minimum SEV-SNP TCB versions by CPUID (family, model and stepping as 8 lowercase hex digits);
// members may name the product instead. Turin's is the value AMD's revision guide gives (CCF 7 corrected it).
const SNP_PRODUCT_CPUIDS = new Map([
  ["Milan", "00a00f11"],
  ["Genoa", "00a10f11"],
  ["Turin", "00b00f21"],
]);
const TCB_SVN_FIELDS = ["boot_loader", "tee", "snp", "microcode"];

function expectSvn(value, field) {
  expectType(value, "integer", field);
  if (value < 0 || value > 255) fail(`${field} must be between 0 and 255, not ${value}`);
}

// The table key of a TCB action: `cpuid` as CCF takes it, or `product` ("Milan", "Genoa", "Turin").
function tcbCpuid(args) {
  expectType(args, "object", "args");
  if (args.product !== undefined && args.product !== null) {
    if (args.cpuid !== undefined && args.cpuid !== null) fail("give either cpuid or product, not both");
    expectType(args.product, "string", "product");
    const cpuid = SNP_PRODUCT_CPUIDS.get(args.product);
    if (cpuid === undefined) fail(`product must be Milan, Genoa or Turin, not ${JSON.stringify(args.product)}`);
    return cpuid;
  }
  expectType(args.cpuid, "string", "cpuid");
  if (!/^[0-9a-f]{8}$/.test(args.cpuid)) {
    fail(`cpuid must be 8 lowercase hexadecimal digits (Milan is "00a00f11"), not ${JSON.stringify(args.cpuid)}`);
  }
  return args.cpuid;
}

// A TCB version object: the four SVNs, optionally fmc (Turin) and hexstring; nothing else.
function expectTcbVersion(value, field) {
  expectType(value, "object", field);
  for (const key of Object.keys(value)) {
    if (!TCB_SVN_FIELDS.includes(key) && key !== "fmc" && key !== "hexstring") {
      fail(`${field}.${key} is not a TCB version field (boot_loader, tee, snp, microcode, fmc)`);
    }
  }
  for (const name of TCB_SVN_FIELDS) expectSvn(value[name], `${field}.${name}`);
  if (value.fmc !== undefined) expectSvn(value.fmc, `${field}.fmc`);
  if (value.hexstring !== undefined) expectTcbHex(value.hexstring, `${field}.hexstring`);
}

function expectTcbHex(value, field) {
  expectType(value, "string", field);
  if (!/^[0-9a-f]{16}$/.test(value)) fail(`${field} must be 16 lowercase hexadecimal digits`);
}

// The fields of a TCB version as AMD prints it (the 64-bit value, most significant byte first). Turin moved the
// SVNs and added the FMC's; Milan and Genoa share one layout. Reserved bytes must be zero.
function tcbFromHex(cpuid, hex) {
  const byte = (i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  const reservedZero = (from, to) => {
    for (let i = from; i < to; i++) {
      if (byte(i) !== 0) fail(`tcb_version ${hex} has reserved byte ${i} set: not a TCB version of CPUID ${cpuid}`);
    }
  };
  if (cpuid === SNP_PRODUCT_CPUIDS.get("Turin")) {
    reservedZero(1, 4);
    return { boot_loader: byte(6), tee: byte(5), snp: byte(4), microcode: byte(0), fmc: byte(7), hexstring: hex };
  }
  if (cpuid === SNP_PRODUCT_CPUIDS.get("Milan") || cpuid === SNP_PRODUCT_CPUIDS.get("Genoa")) {
    reservedZero(2, 6);
    return { boot_loader: byte(7), tee: byte(6), snp: byte(1), microcode: byte(0), hexstring: hex };
  }
  return fail(`CPUID ${cpuid} is not one whose TCB layout is known (Milan, Genoa, Turin): give the fields instead`);
}

// add_snp_tcb_version / set_snp_minimum_tcb_version: the TCB version given as an object of SVNs.
function setTcbVersion() {
  return {
    validate: (args) => {
      tcbCpuid(args);
      expectTcbVersion(args.tcb_version, "tcb_version");
    },
    apply: (args) => {
      const tcb = args.tcb_version;
      const value = { boot_loader: tcb.boot_loader, tee: tcb.tee, snp: tcb.snp, microcode: tcb.microcode };
      if (tcb.fmc !== undefined) value.fmc = tcb.fmc;
      if (tcb.hexstring !== undefined) value.hexstring = tcb.hexstring;
      setJson(T.snpTcbVersions, ccf.strToBuf(tcbCpuid(args)), value);
    },
  };
}

function removeTcbVersion() {
  return {
    validate: (args) => tcbCpuid(args),
    apply: (args) => ccf.kv[T.snpTcbVersions].delete(ccf.strToBuf(tcbCpuid(args))),
  };
}

// remove_js_app takes no arguments; CCF's tooling may send an empty object.
function expectNothing(args) {
  if (args === undefined || args === null) return;
  if (typeof args === "object" && !Array.isArray(args) && Object.keys(args).length === 0) return;
  fail("this action takes no arguments");
}

const JS_RUNTIME_OPTIONS = [
  ["max_heap_bytes", "integer"],
  ["max_stack_bytes", "integer"],
  ["max_execution_time_ms", "integer"],
  ["log_exception_details", "boolean?"],
  ["return_exception_details", "boolean?"],
  ["max_cached_interpreters", "integer?"],
];

function checkJsRuntimeOptions(args) {
  expectType(args, "object", "args");
  const known = JS_RUNTIME_OPTIONS.map(([name]) => name);
  for (const key of Object.keys(args)) {
    if (!known.includes(key)) fail(`${key} is not a JS runtime option (${known.join(", ")})`);
  }
  for (const [name, type] of JS_RUNTIME_OPTIONS) {
    expectType(args[name], type, name);
    if (args[name] !== undefined && args[name] !== null && args[name] < (type === "integer" ? 1 : 0)) {
      fail(`${name} must not be ${type === "integer" ? "below 1" : "negative"}`);
    }
  }
}

// set_evm_config: the EVM app's chain id, base fee (wei), visibility policy and genesis balances {address: wei}
// (consort-evm's config.rs reads it; a wei amount is a non-negative integer or a decimal or 0x-hex string).
const EVM_MAX_GENESIS_ACCOUNTS = 10000;
const U256_MAX_DECIMAL = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
function expectWei(value, field) {
  const ok =
    (Number.isSafeInteger(value) && value >= 0) ||
    (typeof value === "string" && (/^[0-9]{1,78}$/.test(value) || /^0x[0-9a-fA-F]{1,64}$/.test(value)));
  if (!ok) fail(`${field} must be a non-negative integer or a decimal or 0x-hex string`);
  // 78 decimal digits reach past 2^256 - 1, which the node could not parse (every /app/eth call would fail).
  const digits = typeof value === "string" && !value.startsWith("0x") ? value.replace(/^0+/, "") : "";
  if (digits.length === 78 && digits > U256_MAX_DECIMAL) fail(`${field} must be at most 2^256 - 1 wei`);
}
function fitsU64(text) {
  if (text.startsWith("0x")) return text.slice(2).replace(/^0+/, "").length <= 16;
  const digits = text.replace(/^0+/, "");
  return digits.length < 20 || (digits.length === 20 && digits <= "18446744073709551615");
}
function checkEvmConfig(args) {
  expectType(args, "object", "args");
  const known = ["chain_id", "base_fee", "visibility", "genesis"];
  for (const key of Object.keys(args)) {
    if (!known.includes(key)) fail(`${key} is not an EVM configuration field (${known.join(", ")})`);
  }
  expectType(args.chain_id, "integer?", "chain_id");
  if (args.chain_id !== undefined && args.chain_id !== null && !(args.chain_id >= 1 && Number.isSafeInteger(args.chain_id))) {
    fail("chain_id must be a positive integer");
  }
  if (args.base_fee !== undefined && args.base_fee !== null) {
    expectWei(args.base_fee, "base_fee");
    if (typeof args.base_fee === "string" && !fitsU64(args.base_fee)) fail("base_fee must fit in 64 bits");
  }
  if (args.visibility !== undefined && args.visibility !== null && !["own", "all"].includes(args.visibility)) {
    fail('visibility must be "own" or "all"');
  }
  expectType(args.genesis, "object?", "genesis");
  const genesis = Object.entries(args.genesis ?? {});
  if (genesis.length > EVM_MAX_GENESIS_ACCOUNTS) fail(`genesis must credit at most ${EVM_MAX_GENESIS_ACCOUNTS} accounts`);
  for (const [address, wei] of genesis) {
    if (!/^0x[0-9a-fA-F]{40}$/.test(address)) fail(`genesis address ${address} must be 0x and 40 hex digits`);
    expectWei(wei, `genesis balance of ${address}`);
  }
}

function checkJwtIssuer(args) {
  expectType(args, "object", "args");
  expectType(args.issuer, "string", "issuer");
  if (args.issuer.length === 0) fail("issuer must not be empty");
  expectType(args.auto_refresh, "boolean?", "auto_refresh");
  expectType(args.ca_cert_bundle_name, "string?", "ca_cert_bundle_name");
  if (args.jwks !== undefined && args.jwks !== null) ccf.consort.checkJwks(args.issuer, args.jwks);
  const aud = args.audience;
  const okAudience =
    aud === undefined || aud === null || typeof aud === "string" || (Array.isArray(aud) && aud.every((a) => typeof a === "string"));
  if (!okAudience) fail("audience must be a string or an array of strings");
  if (args.auto_refresh === true) {
    if (!args.ca_cert_bundle_name) fail("auto_refresh needs a ca_cert_bundle_name");
    const url = /^https:\/\/([^/?#]+)([^?#]*)$/.exec(args.issuer);
    if (url === null) fail("with auto_refresh, issuer must be an https:// URL without query or fragment");
  }
}

function nodeAction(validate, apply) {
  return { validate, apply };
}

const actions = new Map([
  [
    "set_constitution",
    {
      validate: (args) => expectType(args.constitution, "string", "constitution"),
      apply: (args, proposalId) => {
        setJson(T.constitution, SINGLETON(), args.constitution);
        dropOtherOpenProposals(proposalId);
      },
    },
  ],
  [
    "set_member",
    {
      validate: (args) => {
        expectCerts(args.cert, "cert");
        expectType(args.encryption_pub_key, "string?", "encryption_pub_key");
        expectType(args.member_data, "object?", "member_data");
        if (args.recovery_role !== undefined && args.recovery_role !== null) {
          if (!["NonParticipant", "Participant", "Owner"].includes(args.recovery_role)) {
            fail("recovery_role must be NonParticipant, Participant or Owner");
          }
          if (args.encryption_pub_key === undefined || args.encryption_pub_key === null) {
            fail("recovery_role needs an encryption_pub_key");
          }
        }
      },
      apply: (args) => {
        const id = ccf.strToBuf(ccf.pemToId(args.cert));
        ccf.kv[T.memberCerts].set(id, ccf.strToBuf(args.cert));
        if (args.encryption_pub_key === undefined || args.encryption_pub_key === null) {
          ccf.kv[T.memberKeys].delete(id);
        } else {
          ccf.kv[T.memberKeys].set(id, ccf.strToBuf(args.encryption_pub_key));
        }
        const info = { status: "Accepted" };
        if (args.member_data !== undefined && args.member_data !== null) info.member_data = args.member_data;
        if (args.encryption_pub_key !== undefined && args.encryption_pub_key !== null) {
          info.recovery_role = args.recovery_role ?? "Participant";
        }
        setJson(T.memberInfo, id, info);
        const signature = getJson(T.signatures, SINGLETON());
        setJson(T.memberAcks, id, { state_digest: signature === undefined ? "" : signature.root });
      },
    },
  ],
  [
    "remove_member",
    {
      validate: (args) => expectId(args.member_id, "member_id"),
      apply: (args) => {
        const id = ccf.strToBuf(args.member_id);
        const info = getJson(T.memberInfo, id);
        if (info === undefined) return;
        const activeRecovery = info.status === "Active" && ccf.kv[T.memberKeys].has(id);
        if (activeRecovery) {
          const threshold = serviceConfig().recovery_threshold ?? 0;
          const remaining = activeRecoveryMemberCount() - 1;
          if (remaining < threshold) {
            fail(`removing the member would leave ${remaining} recovery members, below the threshold ${threshold}`);
          }
        }
        for (const table of [T.memberInfo, T.memberKeys, T.memberCerts, T.memberAcks, T.history]) {
          ccf.kv[table].delete(id);
        }
        if (activeRecovery) ccf.node.triggerLedgerRekey();
      },
    },
  ],
  [
    "set_member_data",
    {
      validate: (args) => {
        expectId(args.member_id, "member_id");
        expectType(args.member_data, "object", "member_data");
      },
      apply: (args) => {
        const id = ccf.strToBuf(args.member_id);
        const info = getJson(T.memberInfo, id) ?? fail(`member ${args.member_id} does not exist`);
        info.member_data = args.member_data;
        setJson(T.memberInfo, id, info);
      },
    },
  ],
  [
    "set_user",
    {
      validate: (args) => {
        expectCerts(args.cert, "cert");
        expectType(args.user_data, "object?", "user_data");
      },
      apply: (args) => {
        const id = ccf.strToBuf(ccf.pemToId(args.cert));
        ccf.kv[T.userCerts].set(id, ccf.strToBuf(args.cert));
        setUserInfo(id, args.user_data);
      },
    },
  ],
  [
    "remove_user",
    {
      validate: (args) => expectId(args.user_id, "user_id"),
      apply: (args) => {
        const id = ccf.strToBuf(args.user_id);
        ccf.kv[T.userCerts].delete(id);
        ccf.kv[T.userInfo].delete(id);
      },
    },
  ],
  [
    "set_user_data",
    {
      validate: (args) => {
        expectId(args.user_id, "user_id");
        expectType(args.user_data, "object?", "user_data");
      },
      apply: (args) => {
        const id = ccf.strToBuf(args.user_id);
        if (!ccf.kv[T.userCerts].has(id)) fail(`user ${args.user_id} does not exist`);
        setUserInfo(id, args.user_data);
      },
    },
  ],
  [
    "set_recovery_threshold",
    {
      validate: (args) => {
        expectType(args.recovery_threshold, "integer", "recovery_threshold");
        if (args.recovery_threshold < 1 || args.recovery_threshold > 254) {
          fail("recovery_threshold must be between 1 and 254");
        }
      },
      apply: (args) => updateServiceConfig({ recovery_threshold: args.recovery_threshold }),
    },
  ],
  [
    "set_service_configuration",
    {
      validate: (args) => {
        expectType(args, "object", "args");
        expectType(args.recovery_threshold, "integer?", "recovery_threshold");
        expectType(args.recent_cose_proposals_window_size, "integer?", "recent_cose_proposals_window_size");
        if (args.recent_cose_proposals_window_size !== undefined && args.recent_cose_proposals_window_size < 1) {
          fail("recent_cose_proposals_window_size must be at least 1");
        }
        expectType(args.reconfiguration_type, "string?", "reconfiguration_type");
        expectType(args.maximum_node_certificate_validity_days, "integer?", "maximum_node_certificate_validity_days");
        expectType(
          args.maximum_service_certificate_validity_days,
          "integer?",
          "maximum_service_certificate_validity_days",
        );
      },
      apply: (args) => updateServiceConfig(args),
    },
  ],
  [
    "trigger_recovery_shares_refresh",
    { validate: expectNoArgs, apply: () => ccf.node.triggerRecoverySharesRefresh() },
  ],
  ["trigger_ledger_rekey", { validate: expectNoArgs, apply: () => ccf.node.triggerLedgerRekey() }],
  ["trigger_snapshot", { validate: expectNoArgs, apply: () => ccf.node.triggerSnapshot() }],
  ["trigger_ledger_chunk", { validate: expectNoArgs, apply: () => ccf.node.triggerLedgerChunk() }],
  [
    "transition_service_to_open",
    {
      validate: (args) => {
        expectCerts(args.next_service_identity, "next_service_identity");
        if (args.previous_service_identity !== undefined && args.previous_service_identity !== null) {
          expectCerts(args.previous_service_identity, "previous_service_identity");
        }
      },
      apply: (args) => {
        const service = getJson(T.serviceInfo, SINGLETON()) ?? fail("service information could not be found");
        const previous = args.previous_service_identity ?? undefined;
        if (service.status === "Recovering" && previous === undefined) {
          fail("opening a recovering service needs both the previous and the next service identity");
        }
        ccf.node.transitionServiceToOpen(
          previous === undefined ? undefined : ccf.strToBuf(previous),
          ccf.strToBuf(args.next_service_identity),
        );
      },
    },
  ],
  [
    "transition_node_to_trusted",
    nodeAction(
      (args) => {
        expectId(args.node_id, "node_id");
        expectType(args.valid_from, "string?", "valid_from");
        expectType(args.validity_period_days, "integer?", "validity_period_days");
      },
      (args) => {
        const id = ccf.strToBuf(args.node_id);
        const info = getJson(T.nodeInfo, id) ?? fail(`node ${args.node_id} does not exist`);
        if (info.status === "Pending") {
          const max = serviceConfig().maximum_node_certificate_validity_days ?? 365;
          if (args.validity_period_days !== undefined && args.validity_period_days > max) {
            fail(`validity period ${args.validity_period_days} days exceeds the service maximum of ${max}`);
          }
          info.status = "Trusted";
          info.ledger_secret_seqno = ccf.network.getLatestLedgerSecretSeqno();
          setJson(T.nodeInfo, id, info);
          ccf.node.endorseNodeCertificate(args.node_id, args.valid_from, args.validity_period_days ?? max);
        }
      },
    ),
  ],
  [
    "remove_node",
    nodeAction(
      (args) => expectId(args.node_id, "node_id"),
      (args) => {
        const id = ccf.strToBuf(args.node_id);
        const info = getJson(T.nodeInfo, id);
        if (info === undefined) return;
        if (info.status === "Pending") {
          ccf.kv[T.nodeInfo].delete(id);
          ccf.kv[T.nodeCerts].delete(id);
        } else {
          info.status = "Retired";
          setJson(T.nodeInfo, id, info);
        }
      },
    ),
  ],
  [
    "set_node_data",
    nodeAction(
      (args) => expectId(args.node_id, "node_id"),
      (args) => {
        const id = ccf.strToBuf(args.node_id);
        const info = getJson(T.nodeInfo, id) ?? fail(`node ${args.node_id} does not exist`);
        info.node_data = args.node_data;
        setJson(T.nodeInfo, id, info);
      },
    ),
  ],
  ["add_node_code", allowedToJoin(T.codeIds, "code_id")],
  ["remove_node_code", disallow(T.codeIds, "code_id")],
  ["add_snp_measurement", allowedToJoin(T.snpMeasurements, "measurement")],
  ["remove_snp_measurement", disallow(T.snpMeasurements, "measurement")],
  [
    "add_snp_host_data",
    {
      validate: (args) => {
        expectHex(args.host_data, "host_data");
        expectType(args.security_policy, "string?", "security_policy");
      },
      apply: (args) =>
        setJson(T.snpHostData, ccf.strToBuf(args.host_data.toLowerCase()), args.security_policy ?? ""),
    },
  ],
  ["remove_snp_host_data", disallow(T.snpHostData, "host_data")],
  ["add_snp_tcb_version", setTcbVersion()],
  ["remove_snp_tcb_version", removeTcbVersion()],
  // CCF's names for the same table.
  ["set_snp_minimum_tcb_version", setTcbVersion()],
  [
    "set_snp_minimum_tcb_version_hex",
    {
      validate: (args) => {
        const cpuid = tcbCpuid(args);
        expectTcbHex(args.tcb_version, "tcb_version");
        tcbFromHex(cpuid, args.tcb_version);
      },
      apply: (args) => {
        const cpuid = tcbCpuid(args);
        setJson(T.snpTcbVersions, ccf.strToBuf(cpuid), tcbFromHex(cpuid, args.tcb_version));
      },
    },
  ],
  ["remove_snp_minimum_tcb_version", removeTcbVersion()],
  // The application platform: JS apps and their runtime limits, JWT issuers and keys, CA certificate bundles.
  // The bundle and key checks are the host's (ccf.consort.*), the same ones ccf.node.setJsApp and
  // ccf.setJwtPublicSigningKeys repeat when they write.
  [
    "set_js_app",
    {
      validate: (args) => {
        expectType(args, "object", "args");
        ccf.consort.checkJsAppBundle(args.bundle);
        expectType(args.disable_bytecode_cache, "boolean?", "disable_bytecode_cache");
      },
      apply: (args) => ccf.node.setJsApp(args.bundle, args.disable_bytecode_cache === true),
    },
  ],
  ["remove_js_app", { validate: expectNothing, apply: () => ccf.node.removeJsApp() }],
  [
    "set_js_runtime_options",
    {
      validate: checkJsRuntimeOptions,
      apply: (args) =>
        setJson(T.jsRuntimeOptions, SINGLETON(), {
          max_heap_bytes: args.max_heap_bytes,
          max_stack_bytes: args.max_stack_bytes,
          max_execution_time_ms: args.max_execution_time_ms,
          log_exception_details: args.log_exception_details ?? false,
          return_exception_details: args.return_exception_details ?? false,
          max_cached_interpreters: args.max_cached_interpreters ?? 10,
        }),
    },
  ],
  [
    "set_evm_config",
    {
      validate: checkEvmConfig,
      apply: (args) => {
        const config = {};
        for (const key of ["chain_id", "base_fee", "visibility", "genesis"]) {
          if (args[key] !== undefined && args[key] !== null) config[key] = args[key];
        }
        setJson(T.evmConfig, SINGLETON(), config);
      },
    },
  ],
  [
    "set_ca_cert_bundle",
    {
      validate: (args) => {
        expectType(args, "object", "args");
        expectType(args.name, "string", "name");
        if (args.name.length === 0) fail("name must not be empty");
        expectCerts(args.cert_bundle, "cert_bundle");
      },
      apply: (args) => ccf.kv[T.caCertBundles].set(ccf.strToBuf(args.name), ccf.strToBuf(args.cert_bundle)),
    },
  ],
  [
    "remove_ca_cert_bundle",
    {
      validate: (args) => expectType(args?.name, "string", "name"),
      apply: (args) => ccf.kv[T.caCertBundles].delete(ccf.strToBuf(args.name)),
    },
  ],
  [
    "set_jwt_issuer",
    {
      validate: checkJwtIssuer,
      apply: (args) => {
        const bundle = args.ca_cert_bundle_name ?? null;
        if (args.auto_refresh === true && !ccf.kv[T.caCertBundles].has(ccf.strToBuf(bundle))) {
          fail(`no CA certificate bundle is named ${JSON.stringify(bundle)}`);
        }
        const metadata = { auto_refresh: args.auto_refresh === true, ca_cert_bundle_name: bundle };
        // Consort extension: tokens must name this audience (a string or an array of accepted ones).
        if (args.audience !== undefined && args.audience !== null) metadata.audience = args.audience;
        if (args.jwks !== undefined && args.jwks !== null) {
          ccf.setJwtPublicSigningKeys(args.issuer, metadata, args.jwks);
        }
        setJson(T.jwtIssuers, ccf.strToBuf(args.issuer), metadata);
      },
    },
  ],
  [
    "remove_jwt_issuer",
    {
      validate: (args) => expectType(args?.issuer, "string", "issuer"),
      apply: (args) => {
        const key = ccf.strToBuf(args.issuer);
        if (!ccf.kv[T.jwtIssuers].has(key)) return;
        ccf.kv[T.jwtIssuers].delete(key);
        ccf.removeJwtPublicSigningKeys(args.issuer);
      },
    },
  ],
  [
    "set_jwt_public_signing_keys",
    {
      validate: (args) => {
        expectType(args, "object", "args");
        expectType(args.issuer, "string", "issuer");
        ccf.consort.checkJwks(args.issuer, args.jwks);
      },
      apply: (args) => {
        const metadata = getJson(T.jwtIssuers, ccf.strToBuf(args.issuer));
        if (metadata === undefined) fail(`issuer ${JSON.stringify(args.issuer)} is not a known JWT issuer`);
        ccf.setJwtPublicSigningKeys(args.issuer, metadata, args.jwks);
      },
    },
  ],
]);
