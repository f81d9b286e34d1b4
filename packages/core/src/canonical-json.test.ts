import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  canonicalBytes,
  canonicalize,
  parseCanonicalJson,
  parseJsonBounded,
} from './canonical-json.ts';
import { isFerryError } from './errors.ts';

const LIMITS = { maxBytes: 1 << 20, maxDepth: 16 };
const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
const fromBits = (hex: string): number => Buffer.from(hex, 'hex').readDoubleBE(0);

describe('canonicalize', () => {
  describe('when given the IEEE 754 samples of RFC 8785 appendix B', () => {
    const table: [string, string][] = [
      ['0000000000000000', '0'],
      ['8000000000000000', '0'],
      ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'],
      ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'],
      ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'],
      ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
      ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'],
      ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ];
    for (const [bits, want] of table)
      it(`formats 0x${bits} as ${want}`, () => assert.equal(canonicalize(fromBits(bits)), want));
    it('formats 1e21, 1e-7, 333333333.33333329 and -0', () => {
      assert.equal(
        // The RFC's input literal is deliberately more precise than a double.
        // eslint-disable-next-line no-loss-of-precision
        canonicalize([1e21, 1e-7, 333333333.33333329, -0]),
        '[1e+21,1e-7,333333333.3333333,0]',
      );
    });
  });

  describe('when given the example of RFC 8785 section 3.2.2', () => {
    it('produces the RFC output', () => {
      const input = JSON.parse(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
          ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
          ' "literals": [null, true, false]}',
      ) as unknown;
      assert.equal(
        canonicalize(input),
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
          '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
      );
    });
  });

  describe('when keys need sorting (RFC 8785 section 3.2.3)', () => {
    it('orders them by UTF-16 code units, not code points', () => {
      const input = {
        '\u20ac': 'Euro Sign',
        '\r': 'Carriage Return',
        '\ufb33': 'Hebrew Letter Dalet With Dagesh',
        '1': 'One',
        '\ud83d\ude00': 'Emoji: Grinning Face',
        '\u0080': 'Control',
        '\u00f6': 'Latin Small Letter O With Diaeresis',
      };
      // Code-point order would put the emoji (U+1F600) after U+FB33; UTF-16 order puts it before.
      assert.equal(
        canonicalize(input),
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",' +
          '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",' +
          '"\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
      );
    });
  });

  describe('when strings need escaping', () => {
    it('escapes only quote, backslash and controls, with short forms where defined', () => {
      assert.equal(
        canonicalize('\b\t\n\f\r"\\\u0001\u001f\u007f/é'),
        '"\\b\\t\\n\\f\\r\\"\\\\\\u0001\\u001f\u007f/é"',
      );
    });
  });

  describe('when given values outside I-JSON', () => {
    const bad: [string, unknown][] = [
      ['undefined', undefined],
      ['a function', () => 1],
      ['NaN', NaN],
      ['Infinity', -Infinity],
      ['a bigint', 1n],
      ['a symbol', Symbol('x')],
      ['a Date', new Date(0)],
      ['a Map', new Map()],
      ['a Buffer', Buffer.from('x')],
      ['an undefined member', { a: undefined }],
      ['an array hole', [1, , 3]], // eslint-disable-line no-sparse-arrays
      ['a lone high surrogate', 'a\ud800'],
      ['a lone low surrogate in a key', { '\udc00': 1 }],
    ];
    for (const [what, v] of bad)
      it(`refuses ${what} with JSON_MALFORMED`, () =>
        assert.throws(
          () => canonicalize(v),
          (e) => isFerryError(e, 'JSON_MALFORMED'),
        ));
    it('refuses a cycle with JSON_MALFORMED', () => {
      const o: Record<string, unknown> = {};
      o.self = o;
      assert.throws(
        () => canonicalize(o),
        (e) => isFerryError(e, 'JSON_MALFORMED'),
      );
    });
    it('refuses nesting beyond 1000 levels with MANIFEST_TOO_DEEP, not a stack overflow', () => {
      let deep: unknown = 1;
      for (let i = 0; i < 100000; i++) deep = [deep];
      assert.throws(
        () => canonicalize(deep),
        (e) => isFerryError(e, 'MANIFEST_TOO_DEEP'),
      );
    });
    it('accepts a null-prototype object and a repeated (acyclic) reference', () => {
      const shared = { x: 1 };
      const o = Object.assign(Object.create(null) as object, { b: shared, a: shared });
      assert.equal(canonicalize(o), '{"a":{"x":1},"b":{"x":1}}');
    });
  });

  describe('when given any JSON value', () => {
    it('is idempotent through a parse and round-trips through parseCanonicalJson', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (v) => {
          const s = canonicalize(v);
          assert.equal(canonicalize(JSON.parse(s)), s);
          const b = canonicalBytes(v);
          assert.equal(
            canonicalize(parseCanonicalJson(b, { maxBytes: 1 << 24, maxDepth: 1000 })),
            s,
          );
        }),
      );
    });
  });
});

describe('parseJsonBounded', () => {
  const code = (input: Uint8Array, want: string, limits = LIMITS): void => {
    assert.throws(
      () => parseJsonBounded(input, limits),
      (e) => isFerryError(e) && e.code === want,
    );
  };
  describe('when the input is within limits', () => {
    it('returns the value', () => {
      assert.deepEqual(parseJsonBounded(bytes(' {"a": [1, "x\\"]{"]} '), LIMITS), {
        a: [1, 'x"]{'],
      });
    });
    it('counts a top-level object as depth 1', () => {
      assert.deepEqual(parseJsonBounded(bytes('[[1]]'), { maxBytes: 10, maxDepth: 2 }), [[1]]);
      code(bytes('[[[1]]]'), 'MANIFEST_TOO_DEEP', { maxBytes: 10, maxDepth: 2 });
    });
    it('ignores brackets inside strings when measuring depth', () => {
      assert.equal(
        parseJsonBounded(bytes('"[[[[{{{{\\\\"'), { maxBytes: 100, maxDepth: 1 }),
        '[[[[{{{{\\',
      );
    });
  });
  describe('when the input is oversized', () => {
    it('throws MANIFEST_TOO_LARGE', () =>
      code(bytes('"xxxxxxxxx"'), 'MANIFEST_TOO_LARGE', { maxBytes: 10, maxDepth: 4 }));
  });
  describe('when the input nests 100000 deep', () => {
    it('throws MANIFEST_TOO_DEEP without overflowing the stack', () => {
      code(bytes('['.repeat(100000) + ']'.repeat(100000)), 'MANIFEST_TOO_DEEP', {
        maxBytes: 1e6,
        maxDepth: 16,
      });
      code(bytes('{"a":'.repeat(100000) + '1' + '}'.repeat(100000)), 'MANIFEST_TOO_DEEP', {
        maxBytes: 1e7,
        maxDepth: 16,
      });
    });
  });
  describe('when the input is malformed', () => {
    for (const text of [
      '',
      '{',
      '{"a":1,}',
      '[1 2]',
      "{'a':1}",
      '"\u0001"',
      'tru',
      '{"a":1} x',
      '"\\x"',
      '01',
      '\ufeff{}',
    ])
      it(`throws JSON_MALFORMED for ${JSON.stringify(text)}`, () =>
        code(bytes(text), 'JSON_MALFORMED'));
  });
  describe('when the input is not UTF-8', () => {
    for (const hex of ['22ff22', '22c08022', '22eda08022', '22e28222'])
      it(`throws JSON_MALFORMED for ${hex}`, () => code(Buffer.from(hex, 'hex'), 'JSON_MALFORMED'));
  });
  describe('when an object repeats a key', () => {
    it('throws JSON_MALFORMED, also when the spellings differ', () => {
      code(bytes('{"a":1,"a":2}'), 'JSON_MALFORMED');
      code(bytes('{"a":1,"\\u0061":2}'), 'JSON_MALFORMED');
      code(bytes('{"x":{"a":1, "b":{"a":1}, "a" :2}}'), 'JSON_MALFORMED');
    });
    it('accepts the same key in different objects and as a value', () => {
      assert.deepEqual(parseJsonBounded(bytes('[{"a":"a"},{"a":["a"]}]'), LIMITS), [
        { a: 'a' },
        { a: ['a'] },
      ]);
    });
  });
});

describe('parseCanonicalJson', () => {
  describe('when the bytes are canonical', () => {
    it('returns the value', () => {
      assert.deepEqual(parseCanonicalJson(bytes('{"a":[1e+21,"€"],"b":null}'), LIMITS), {
        a: [1e21, '€'],
        b: null,
      });
    });
  });
  describe('when the bytes are not canonical', () => {
    for (const text of [
      '{"b":1,"a":2}',
      '{"a": 1}',
      '[1.0]',
      '[1E+21]',
      '"\\u20ac"',
      '"\\/"',
      '{"a":1}\n',
      '[100000000000000000001]',
    ])
      it(`throws JSON_NOT_CANONICAL for ${JSON.stringify(text)}`, () =>
        assert.throws(
          () => parseCanonicalJson(bytes(text), LIMITS),
          (e) => isFerryError(e, 'JSON_NOT_CANONICAL'),
        ));
  });
  describe('when a value is outside I-JSON', () => {
    for (const text of ['[1e400]', '["\\ud800"]'])
      it(`throws JSON_MALFORMED for ${text}`, () =>
        assert.throws(
          () => parseCanonicalJson(bytes(text), LIMITS),
          (e) => isFerryError(e, 'JSON_MALFORMED'),
        ));
  });
});
