// CCF's logging sample API in plain JavaScript, for comparing the JavaScript app platform with the built-in Rust
// logging app (`consort bench --workload js` against `--workload private`). Keys are the id as an 8-byte
// little-endian integer, as the Rust app stores them.

const records = ccf.kv["js_records"];

function key(id) {
  const buf = new ArrayBuffer(8);
  new DataView(buf).setBigUint64(0, BigInt(id), true);
  return buf;
}

export function writePrivate(request) {
  const body = request.body.json();
  if (!Number.isSafeInteger(body.id) || body.id < 0 || typeof body.msg !== "string") {
    return { statusCode: 400, body: { error: { code: "InvalidInput", message: 'expected {"id": u64, "msg": string}' } } };
  }
  records.set(key(body.id), ccf.strToBuf(body.msg));
  return { body: true };
}

export function readPrivate(request) {
  const match = /(?:^|&)id=(\d+)/.exec(request.query);
  if (match === null) {
    return { statusCode: 400, body: { error: { code: "InvalidQueryParameterValue", message: "id must be a u64" } } };
  }
  const v = records.get(key(Number(match[1])));
  if (v === undefined) {
    return { statusCode: 404, body: { error: { code: "ResourceNotFound", message: `No such record: ${match[1]}.` } } };
  }
  return { body: { msg: ccf.bufToStr(v) } };
}
