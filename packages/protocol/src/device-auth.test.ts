import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceSigningString } from './device-auth.ts';
import { canonicalJson } from './canonical.ts';

describe('deviceSigningString', () => {
  it('binds every field on its own line, method upper-cased (golden)', () => {
    const s = deviceSigningString({
      method: 'post',
      path: '/api/v1/device/checkin?x=1',
      timestamp: 1700000000000,
      nonce: 'AAAAAAAAAAAAAAAAAAAAAA',
      bodySha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      deviceId: '0123456789abcdef0123456789abcdef',
    });
    assert.equal(
      s,
      'ferry-device-request-v1\nPOST\n/api/v1/device/checkin?x=1\n1700000000000\nAAAAAAAAAAAAAAAAAAAAAA\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n0123456789abcdef0123456789abcdef',
    );
  });
});

describe('canonicalJson', () => {
  it('sorts keys, drops undefined and refuses floats', () => {
    assert.equal(
      canonicalJson({ b: 1, a: [true, null, 'x'], c: undefined }),
      '{"a":[true,null,"x"],"b":1}',
    );
    assert.throws(() => canonicalJson({ a: 1.5 }), TypeError);
  });
});
