// Consort's `ccf` global for governance JavaScript. Evaluated as a function expression that receives the
// native host object and returns the call helper; the host object stays private to these closures.
(function (host) {
  "use strict";
  const CHUNK = 4096;
  // ArrayBuffer -> binary string (one char per byte): the form bytes cross into the host in.
  function toBin(buf) {
    let u8;
    if (buf instanceof ArrayBuffer) {
      u8 = new Uint8Array(buf);
    } else if (ArrayBuffer.isView(buf)) {
      u8 = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } else {
      throw new TypeError("expected an ArrayBuffer");
    }
    let s = "";
    for (let i = 0; i < u8.length; i += CHUNK) {
      s += String.fromCharCode.apply(null, u8.subarray(i, i + CHUNK));
    }
    return s;
  }
  class KvMap {
    constructor(mapName) {
      this.mapName = mapName;
    }
    get(key) {
      return host.kvGet(this.mapName, toBin(key));
    }
    has(key) {
      return host.kvHas(this.mapName, toBin(key));
    }
    set(key, value) {
      host.kvSet(this.mapName, toBin(key), value === undefined ? "" : toBin(value));
      return this;
    }
    delete(key) {
      return host.kvDelete(this.mapName, toBin(key));
    }
    clear() {
      host.kvClear(this.mapName);
    }
    get size() {
      return host.kvSize(this.mapName);
    }
    forEach(callback) {
      for (const entry of host.kvEntries(this.mapName)) {
        callback(entry[1], entry[0], this);
      }
    }
  }
  const kv = new Proxy(
    {},
    {
      get(_target, name) {
        return typeof name === "string" ? new KvMap(name) : undefined;
      },
    },
  );
  const bufToStr = (buf) => host.bufToStr(toBin(buf));
  const strToBuf = (s) => host.strToBuf(String(s));
  const orNull = (v) => (v === undefined || v === null ? null : v);
  const toJson = (v) => JSON.stringify(v === undefined ? null : v);
  const unsupported = (name) => () => {
    throw new Error(`${name} is not supported by Consort`);
  };
  const ccf = {
    kv,
    strToBuf,
    bufToStr,
    jsonCompatibleToBuf: (v) => host.strToBuf(JSON.stringify(v)),
    bufToJsonCompatible: (buf) => JSON.parse(bufToStr(buf)),
    pemToId: (pem) => host.pemToId(String(pem)),
    crypto: {
      digest: (alg, buf) => host.digest(String(alg), toBin(buf)),
      sha256: (buf) => host.digest("SHA-256", toBin(buf)),
      isValidX509CertBundle: (pem) => host.isValidX509CertBundle(String(pem)),
      isValidX509CertChain: (chain, trusted) => host.isValidX509CertChain(String(chain), String(trusted)),
      pubPemToJwk: (pem, kid) => JSON.parse(host.pubPemToJwk(String(pem), kid === undefined ? "" : String(kid))),
    },
    // Effects of CCF's constitution beyond the KV.
    refreshAppBytecodeCache: () => host.refreshAppBytecodeCache(),
    setJwtPublicSigningKeys: (issuer, metadata, jwks) =>
      host.setJwtPublicSigningKeys(String(issuer), toJson(metadata ?? {}), toJson(jwks)),
    removeJwtPublicSigningKeys: (issuer) => host.removeJwtPublicSigningKeys(String(issuer)),
    // Consort extensions: the checks behind setJsApp and setJwtPublicSigningKeys, for a constitution's validate.
    consort: {
      checkJsAppBundle: (bundle) => host.checkJsApp(toJson(bundle)),
      checkJwks: (issuer, jwks) => host.checkJwks(String(issuer), toJson(jwks)),
    },
    node: {
      triggerLedgerRekey: () => host.action("trigger_ledger_rekey", "null"),
      triggerRecoverySharesRefresh: () => host.action("trigger_recovery_shares_refresh", "null"),
      triggerSnapshot: () => host.action("trigger_snapshot", "null"),
      triggerLedgerChunk: () => host.action("trigger_ledger_chunk", "null"),
      setJsApp: (bundle, disableBytecodeCache) => host.setJsApp(toJson(bundle), disableBytecodeCache === true),
      removeJsApp: () => host.removeJsApp(),
      triggerACMERefresh: unsupported("ccf.node.triggerACMERefresh (ACME certificates)"),
      shuffleSealedShares: unsupported("ccf.node.shuffleSealedShares (sealed recovery shares)"),
      transitionServiceToOpen: (previous, next) =>
        host.action(
          "transition_service_to_open",
          JSON.stringify({
            previous_service_identity: previous === undefined || previous === null ? null : bufToStr(previous),
            next_service_identity: next === undefined || next === null ? null : bufToStr(next),
          }),
        ),
      // Consort extension: ask the node to issue an endorsed certificate for a node it trusts.
      endorseNodeCertificate: (nodeId, validFrom, validityPeriodDays) =>
        host.action(
          "endorse_node_certificate",
          JSON.stringify({
            node_id: String(nodeId),
            valid_from: orNull(validFrom),
            validity_period_days: orNull(validityPeriodDays),
          }),
        ),
    },
    network: {
      getLatestLedgerSecretSeqno: () => host.latestLedgerSecretSeqno(),
      generateEndorsedCertificate: (csr, validFrom, validityPeriodDays) =>
        host.generateEndorsedCertificate(String(csr), String(validFrom), Number(validityPeriodDays)),
      generateNetworkCertificate: (validFrom, validityPeriodDays) =>
        host.generateNetworkCertificate(String(validFrom), Number(validityPeriodDays)),
    },
  };
  Object.freeze(ccf.crypto);
  Object.freeze(ccf.node);
  Object.freeze(ccf.network);
  Object.freeze(ccf.consort);
  Object.freeze(ccf);
  globalThis.ccf = ccf;
  const show = (a) => {
    if (typeof a === "string") return a;
    const j = JSON.stringify(a);
    return j === undefined ? String(a) : j;
  };
  const log = (...args) => host.log(args.map(show).join(" "));
  globalThis.console = Object.freeze({ log, info: log, warn: log, error: log, debug: log });
  // Governance must be deterministic: every node replays the same call to the same result.
  Math.random = () => host.random();
  return function (fn, argsJson) {
    const result = fn(...JSON.parse(argsJson));
    return result === undefined ? undefined : JSON.stringify(result);
  };
});
