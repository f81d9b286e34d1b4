import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from './errors.ts';
import { compareSemver, isSemver, parseSemver } from './semver.ts';

describe('isSemver', () => {
  describe('when given SemVer 2.0.0 versions', () => {
    for (const v of [
      '0.0.0',
      '1.2.3',
      '1.0.0-0.3.7',
      '1.0.0-x-y-z.--',
      '1.0.0+21AF26D3----117B344092BD',
    ])
      it(`accepts ${v}`, () => assert.equal(isSemver(v), true));
  });
  describe('when given something else', () => {
    for (const v of [
      '1',
      '1.2',
      '1.2.3.4',
      '01.2.3',
      '1.2.3-01',
      '1.2.3-',
      '1.2.3+',
      'v1.2.3',
      ' 1.2.3',
      `1.2.3-${'a'.repeat(300)}`,
      1,
    ])
      it(`refuses ${JSON.stringify(v).slice(0, 20)}`, () => assert.equal(isSemver(v), false));
  });
});

describe('parseSemver', () => {
  describe('when the version has every part', () => {
    it('splits pre-release and build identifiers', () =>
      assert.deepEqual(parseSemver('1.2.3-rc.1+b.5'), {
        major: '1',
        minor: '2',
        patch: '3',
        prerelease: ['rc', '1'],
        build: ['b', '5'],
      }));
  });
});

describe('compareSemver', () => {
  describe('when versions differ', () => {
    it('follows the SemVer 2.0.0 precedence example chain', () => {
      const chain = [
        '1.0.0-alpha',
        '1.0.0-alpha.1',
        '1.0.0-alpha.beta',
        '1.0.0-beta',
        '1.0.0-beta.2',
        '1.0.0-beta.11',
        '1.0.0-rc.1',
        '1.0.0',
        '1.9.0',
        '1.10.0',
        '1.11.0',
        '2.0.0',
        '99999999999999999999.0.0',
      ];
      for (let i = 0; i + 1 < chain.length; i++) {
        assert.ok(compareSemver(chain[i]!, chain[i + 1]!) < 0, `${chain[i]} < ${chain[i + 1]}`);
        assert.ok(compareSemver(chain[i + 1]!, chain[i]!) > 0);
      }
    });
  });
  describe('when versions differ only in build metadata', () => {
    it('returns 0', () => assert.equal(compareSemver('1.0.0+a', '1.0.0+b.2'), 0));
  });
  describe('when a version is invalid', () => {
    it('throws MANIFEST_SCHEMA', () =>
      assert.throws(
        () => compareSemver('1.0', '1.0.0'),
        (e) => isFerryError(e, 'MANIFEST_SCHEMA'),
      ));
  });
});
