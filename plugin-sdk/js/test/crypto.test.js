// seal and keyedHash: node --test plugin-sdk/js/test/
//
// Under plain Node there is no host, so no keyring; inside the component the
// plugin hands the SDK the host's `crypto` interface with `useCrypto`.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import { keyedHash, seal, useCrypto, utf8 } from '../redis-spanner-sdk.js';

afterEach(() => useCrypto(undefined));

const text = (bytes) => new TextDecoder().decode(bytes);

/** A stand-in for the host's crypto interface that records its calls. */
function fakeCrypto(calls) {
  return {
    seal(keyName, plaintext, aad) {
      calls.push(['seal', keyName, text(plaintext), text(aad)]);
      return utf8(`sealed(${keyName})`);
    },
    keyedHash(keyName, data) {
      calls.push(['keyed-hash', keyName, text(data)]);
      return 'ab'.repeat(32);
    },
  };
}

test('outside the host there is no keyring', () => {
  assert.throws(() => seal('x', new Uint8Array([1]), new Uint8Array()), (e) => e === 'seal with key "x": no keyring outside the host');
  assert.throws(() => keyedHash('emails', utf8('a@b')), (e) => e === 'keyed-hash with key "emails": no keyring outside the host');
  assert.throws(() => seal('say "hi"', 'p', 'a'), (e) => e === 'seal with key "say \\"hi\\"": no keyring outside the host');
});

test('seal and keyedHash call the crypto interface given to useCrypto', () => {
  const calls = [];
  useCrypto(fakeCrypto(calls));
  assert.equal(text(seal('users', utf8('secret'), utf8('users:1'))), 'sealed(users)');
  assert.equal(text(seal('users', 'é', 'users:2')), 'sealed(users)', 'strings are taken as UTF-8');
  assert.equal(keyedHash('emails', 'ada@example.com'), 'ab'.repeat(32));
  assert.equal(keyedHash('emails', new Uint8Array([0x61])), 'ab'.repeat(32));
  assert.deepEqual(calls, [
    ['seal', 'users', 'secret', 'users:1'],
    ['seal', 'users', 'é', 'users:2'],
    ['keyed-hash', 'emails', 'ada@example.com'],
    ['keyed-hash', 'emails', 'a'],
  ]);
});

test("the host's refusal is thrown as its string", () => {
  // An import's err arrives as an Error whose payload is the string.
  const refuse = (message) => () => {
    throw Object.assign(new Error(message), { payload: message });
  };
  useCrypto({ seal: refuse('key "k" is not granted to this plugin'), keyedHash: refuse('no keyring') });
  assert.throws(() => seal('k', 'p', 'a'), (e) => e === 'key "k" is not granted to this plugin');
  assert.throws(() => keyedHash('k', 'd'), (e) => e === 'no keyring');
});

test('useCrypto wants the crypto interface; undefined forgets it', () => {
  assert.throws(() => useCrypto({}), TypeError);
  assert.throws(() => useCrypto(null), TypeError);
  assert.throws(() => useCrypto({ seal() {} }), TypeError);
  useCrypto(fakeCrypto([]));
  assert.equal(keyedHash('k', 'd'), 'ab'.repeat(32));
  useCrypto(undefined);
  assert.throws(() => keyedHash('k', 'd'), (e) => e === 'keyed-hash with key "k": no keyring outside the host');
});

test('bytes must be strings or Uint8Arrays', () => {
  useCrypto(fakeCrypto([]));
  assert.throws(() => seal('k', 42, 'a'), TypeError);
  assert.throws(() => seal('k', 'p', [1]), TypeError);
  assert.throws(() => keyedHash('k', null), TypeError);
});
