// Independent oracle for live mode: viem recomputes, from tests/vectors/live.json, the EIP-3009
// typed-data hash and the signer core produced, and signs the same transfer itself; core's
// vectors must agree with viem both ways.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hashTypedData, hashDomain, recoverTypedDataAddress, keccak256, toBytes, concat, getAddress } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

const here = fileURLToPath(new URL('.', import.meta.url));
const v = JSON.parse(readFileSync(`${here}/../../../tests/vectors/live.json`, 'utf8'));
const a = v.authorization;
const td = a.typed_data;
const message = { ...td.message, value: BigInt(td.message.value), validAfter: BigInt(td.message.validAfter), validBefore: BigInt(td.message.validBefore) };
const typed = { domain: td.domain, types: { TransferWithAuthorization: td.types.TransferWithAuthorization }, primaryType: td.primaryType, message };

test('viem hashes the same EIP-712 digest and domain separator', () => {
  assert.equal(hashTypedData(typed), a.signing_hash);
  assert.equal(hashDomain({ domain: td.domain, types: { EIP712Domain: td.types.EIP712Domain } }), a.domain_separator);
});

test("viem recovers the payer from core's signature", async () => {
  const signer = await recoverTypedDataAddress({ ...typed, signature: a.signature });
  assert.equal(signer, getAddress(td.message.from));
  assert.equal(getAddress(a.request.payer), signer);
});

test('viem signs the same transfer with the same key to a signature core verified', async () => {
  const account = privateKeyToAccount(v.payer_key);
  assert.equal(account.address, getAddress(td.message.from));
  const sig = await account.signTypedData(typed);
  // Both are RFC 6979 deterministic and low-s: byte for byte the same.
  assert.equal(sig, a.signature);
});

test('the authorization nonce is derived from the challenge as docs/protocol.md says', () => {
  const json = JSON.parse(Buffer.from(a.challenge, 'base64url').toString('utf8'));
  const input = concat([toBytes('vlexivo-eip3009-nonce-v1\n'), toBytes(json.account), toBytes('\n'), toBytes(json.nonce)]);
  assert.equal(keccak256(input), a.nonce);
  assert.equal(td.message.nonce, a.nonce);
  assert.equal(getAddress(td.message.to), getAddress(json.pay_to));
  assert.equal(td.domain.verifyingContract, json.asset);
  assert.equal(`eip155:${td.domain.chainId}`, json.network);
  assert.equal(td.message.validBefore, String(json.exp));
});
