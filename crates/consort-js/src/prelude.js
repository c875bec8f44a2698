// Consort's `ccf` global for JavaScript apps. Evaluated as a function expression that receives the native host
// object and returns the call helper; the host object stays private to these closures.
(function (host) {
  "use strict";
  const CHUNK = 4096;
  // ArrayBuffer or view -> binary string (one char per byte): the form bytes cross into the host in.
  function toBin(buf) {
    let u8;
    if (buf instanceof ArrayBuffer) {
      u8 = new Uint8Array(buf);
    } else if (ArrayBuffer.isView(buf)) {
      u8 = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } else {
      throw new TypeError("expected an ArrayBuffer or a typed array");
    }
    if (u8.length <= CHUNK) return String.fromCharCode.apply(null, u8);
    let s = "";
    for (let i = 0; i < u8.length; i += CHUNK) {
      s += String.fromCharCode.apply(null, u8.subarray(i, i + CHUNK));
    }
    return s;
  }
  // The request's own transaction; historical states from getStateRange have slots 0, 1, ...
  const REQUEST_SLOT = -1;
  class KvMap {
    constructor(name, slot) {
      this.name = name;
      this.slot = slot;
    }
    writable() {
      if (this.slot !== REQUEST_SLOT) throw new Error("a historical state is read-only");
    }
    get(key) {
      return host.kvGet(this.slot, this.name, toBin(key));
    }
    has(key) {
      return host.kvHas(this.slot, this.name, toBin(key));
    }
    set(key, value) {
      this.writable();
      host.kvSet(this.name, toBin(key), toBin(value));
      return this;
    }
    delete(key) {
      this.writable();
      return host.kvDelete(this.name, toBin(key));
    }
    clear() {
      this.writable();
      host.kvClear(this.name);
    }
    get size() {
      return host.kvSize(this.slot, this.name);
    }
    forEach(callback) {
      for (const entry of host.kvEntries(this.slot, this.name)) {
        callback(entry[1], entry[0], this);
      }
    }
    getVersionOfPreviousWrite(key) {
      return host.kvVersion(this.slot, this.name, toBin(key));
    }
  }
  function makeKv(slot) {
    const maps = new Map();
    return new Proxy(
      {},
      {
        get(_target, name) {
          if (typeof name !== "string") return undefined;
          let m = maps.get(name);
          if (m === undefined) {
            m = new KvMap(name, slot);
            maps.set(name, m);
          }
          return m;
        },
      },
    );
  }
  const kv = makeKv(REQUEST_SLOT);
  // ccf.historical.getStateRange(handle, from, to, secondsUntilExpiry): the states, or null while the node
  // fetches them (answer 202 and let the client retry). The node's cache is shared and bounded in bytes, so
  // the handle and expiry are accepted and not used; range states carry no receipt.
  function getStateRange(_handle, from, to, _secondsUntilExpiry) {
    const got = host.stateRange(Number(from), Number(to));
    if (got === null || got === undefined) return null;
    return JSON.parse(got).map((s) =>
      Object.freeze({ transactionId: `${s.view}.${s.seqno}`, receipt: undefined, kv: makeKv(s.slot) }),
    );
  }
  const bufToStr = (buf) => host.utf8Decode(toBin(buf));
  const strToBuf = (s) => host.utf8Encode(String(s));
  const json = (v) => (v === undefined ? "null" : JSON.stringify(v));
  const ccf = {
    kv,
    strToBuf,
    bufToStr,
    jsonCompatibleToBuf: (v) => strToBuf(JSON.stringify(v)),
    bufToJsonCompatible: (buf) => JSON.parse(bufToStr(buf)),
    enableUntrustedDateTime: (_enable) => true,
    enableMetricsLogging: (_enable) => true,
    crypto: {
      digest: (alg, data) => host.digest(String(alg), toBin(data)),
      verifySignature: (algorithm, key, signature, data) =>
        host.verifySignature(json(algorithm), String(key), toBin(signature), toBin(data)),
      sign: (algorithm, key, data) => host.sign(json(algorithm), String(key), toBin(data)),
      generateAesKey: (size) => host.generateAesKey(Number(size)),
      generateRsaKeyPair: (size, exponent) =>
        JSON.parse(host.generateRsaKeyPair(Number(size), exponent === undefined ? 65537 : Number(exponent))),
      generateEcdsaKeyPair: (curve) => JSON.parse(host.generateEcdsaKeyPair(String(curve))),
      wrapKey: (key, wrappingKey, params) => host.wrapKey(toBin(key), bufToStr(wrappingKey), json(params)),
      unwrapKey: (wrapped, unwrappingKey, params) =>
        host.unwrapKey(toBin(wrapped), bufToStr(unwrappingKey), json(params)),
      isValidX509CertBundle: (pem) => host.isValidX509CertBundle(String(pem)),
    },
    rpc: {
      setApplyWrites: (apply) => host.setApplyWrites(Boolean(apply)),
      setClaimsDigest: (digest) => host.setClaimsDigest(toBin(digest)),
    },
    consensus: {
      getLastCommittedTxId: () => JSON.parse(host.lastCommitted()),
      getStatusForTxId: (view, seqno) => host.txStatus(Number(view), Number(seqno)),
      getViewForSeqno: (seqno) => host.viewOf(Number(seqno)),
    },
    historical: {
      getStateRange,
      // The cache evicts by size on its own; there is nothing per handle to drop.
      dropCachedStates: (_handle) => true,
    },
    historicalState: undefined,
  };
  Object.freeze(ccf.historical);
  Object.freeze(ccf.crypto);
  Object.freeze(ccf.rpc);
  Object.freeze(ccf.consensus);
  globalThis.ccf = ccf;
  const show = (a) => {
    if (typeof a === "string") return a;
    const j = JSON.stringify(a);
    return j === undefined ? String(a) : j;
  };
  const log = (...args) => host.log(args.map(show).join(" "));
  globalThis.console = Object.freeze({ log, info: log, warn: log, error: log, debug: log });

  function makeRequest(requestJson, bodyBin) {
    const request = JSON.parse(requestJson);
    request.body = Object.freeze({
      text: () => host.utf8Decode(bodyBin),
      json: () => JSON.parse(host.utf8Decode(bodyBin)),
      arrayBuffer: () => host.binToBuf(bodyBin),
    });
    return request;
  }
  // [status, headers as JSON, kind, payload]: kind "none" | "text" | "json" | "bytes" (payload a binary string).
  function respond(response) {
    if (response === undefined || response === null) response = {};
    const status = response.statusCode === undefined ? 200 : Number(response.statusCode);
    const headers = {};
    for (const [name, value] of Object.entries(response.headers || {})) {
      headers[String(name).toLowerCase()] = String(value);
    }
    const body = response.body;
    if (body === undefined || body === null) return [status, JSON.stringify(headers), "none", ""];
    if (typeof body === "string") return [status, JSON.stringify(headers), "text", body];
    if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
      return [status, JSON.stringify(headers), "bytes", toBin(body)];
    }
    return [status, JSON.stringify(headers), "json", JSON.stringify(body)];
  }
  return function (fn, requestJson, bodyBin, historicalJson) {
    if (historicalJson !== "") {
      const h = JSON.parse(historicalJson);
      ccf.historicalState = { transactionId: h.transactionId, receipt: h.receipt, kv };
    } else {
      ccf.historicalState = undefined;
    }
    return respond(fn(makeRequest(requestJson, bodyBin)));
  };
});
