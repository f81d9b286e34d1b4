import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { deviceSigningString, sessionExpiry } from './device-auth.ts';
import {
  DeviceSession,
  ephemeralKey,
  newSessionId,
  sessionAnswer,
  sessionKey,
  sessionMac,
  sessionMacValid,
} from './device-session.ts';

const DEVICE = '0123456789abcdef0123456789abcdef';
const parts = {
  method: 'POST',
  path: '/api/v1/device/checkin',
  timestamp: 1,
  nonce: 'n'.repeat(22),
  bodySha256: 'e'.repeat(64),
  deviceId: DEVICE,
};

describe('device session', () => {
  describe('when the server answers a session request', () => {
    it('gives the device, and only the device, the key it derives itself', () => {
      const secret = randomBytes(32);
      const eph = ephemeralKey();
      const a = sessionAnswer(secret, DEVICE, eph.publicKeyHex, 1_900_000_000_000);
      assert.equal(sessionExpiry(a.sessionId), 1_900_000_000_000);
      const want = sessionKey(secret, DEVICE, a.sessionId).toString('hex');
      assert.equal(DeviceSession.accept(a, eph.privateKey, DEVICE).export().key, want);
      assert.notEqual(a.wrappedKey, want);
      assert.notEqual(
        DeviceSession.accept(a, ephemeralKey().privateKey, DEVICE).export().key,
        want,
      );
      // The pad is bound to the device id: another id unmasks another key.
      assert.notEqual(DeviceSession.accept(a, eph.privateKey, 'f'.repeat(32)).export().key, want);
    });

    it('refuses a malformed answer', () => {
      const eph = ephemeralKey();
      assert.throws(() => DeviceSession.accept({}, eph.privateKey, DEVICE));
      const a = sessionAnswer(randomBytes(32), DEVICE, eph.publicKeyHex, 1_900_000_000_000);
      assert.throws(() =>
        DeviceSession.accept({ ...a, sessionId: 's1.1.x' }, eph.privateKey, DEVICE),
      );
      assert.throws(() => DeviceSession.accept({ ...a, serverKey: 'zz' }, eph.privateKey, DEVICE));
    });
  });

  describe('when a request is authenticated', () => {
    it('binds the session id into the signed text, and the MAC to every field', () => {
      const key = randomBytes(32);
      const id = newSessionId(1_900_000_000_000);
      const text = deviceSigningString({ ...parts, session: id });
      assert.notEqual(text, deviceSigningString(parts));
      assert.ok(text.startsWith('ferry-device-session-request-v1\n'));
      assert.ok(text.endsWith(`\n${id}`));
      const mac = sessionMac(key, text);
      assert.equal(mac.length, 44);
      assert.ok(sessionMacValid(key, text, mac));
      assert.ok(!sessionMacValid(key, text.replace('checkin', 'report'), mac));
      assert.ok(!sessionMacValid(randomBytes(32), text, mac));
      assert.ok(!sessionMacValid(key, text, mac.slice(0, 40)));
    });
  });

  describe('when a stored session is read back', () => {
    it('restores a valid one and refuses a damaged one', () => {
      const secret = randomBytes(32);
      const eph = ephemeralKey();
      const a = sessionAnswer(secret, DEVICE, eph.publicKeyHex, 1_900_000_000_000);
      const s = DeviceSession.accept(a, eph.privateKey, DEVICE);
      const back = DeviceSession.restore(JSON.parse(JSON.stringify(s.export())));
      assert.deepEqual(back?.export(), s.export());
      assert.equal(back?.expiresAt, 1_900_000_000_000);
      assert.equal(DeviceSession.restore({ ...s.export(), key: 'x' }), undefined);
      assert.equal(DeviceSession.restore({ ...s.export(), sessionId: 'nope' }), undefined);
      assert.equal(DeviceSession.restore(null), undefined);
      assert.ok(s.usable(1_900_000_000_000 - 120_000));
      assert.ok(!s.usable(1_900_000_000_000 - 30_000));
    });
  });
});
