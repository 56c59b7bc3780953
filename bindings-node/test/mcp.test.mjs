// Paid MCP tools with the real SDK, over stdio (the server a child process) and over
// streamable HTTP (a real node:http server), against a real facilitator: an unpaid call gets
// -32402 with the challenge, the client pays once and gets the result, a replayed proof is
// refused, a failing tool does not consume the proof, a price over the cap is refused before
// paying, a free tool stays free.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { VlexivoClient, Wallet, VlexivoBudgetError } from 'vlexivo';
import { callPaidTool, PAYMENT_REQUIRED } from 'vlexivo/mcp';
import { startFacilitator, onboard, topUp, balance, pkgRoot } from './helpers.mjs';
import { buildServer } from './mcp-server.mjs';

const ORIGIN = 'https://tools.example';
let fac;
let provider;

before(async () => {
  fac = await startFacilitator();
  provider = await onboard(fac.url);
});
after(() => fac?.stop());

const parse = (result) => JSON.parse(result.content[0].text);

async function stdioClient() {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [join(pkgRoot, 'test', 'mcp-server.mjs')],
    env: { ...process.env, VLX_SECRET_KEY: provider.api_secret, VLX_FACILITATOR_URL: fac.url, VLX_MCP_ORIGIN: ORIGIN },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(transport);
  return { client, close: () => client.close() };
}

async function httpClient() {
  // One MCP server and one session (a real streamable HTTP transport on a real http server).
  const { mcp } = buildServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url, origin: ORIGIN });
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID() });
  await mcp.connect(transport);
  const server = createServer((req, res) => transport.handleRequest(req, res));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(`http://127.0.0.1:${server.address().port}/mcp`);
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url));
  return {
    client,
    close: async () => {
      await client.close();
      await mcp.close();
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The MCP client as callPaidTool sees it, recording the proofs it sends. */
function recording(client, proofs) {
  return {
    callTool: (params, ...rest) => {
      const p = params._meta?.['vlexivo/proof'];
      if (p !== undefined) proofs.push(p);
      return client.callTool(params, ...rest);
    },
  };
}

for (const [name, connect] of [['stdio', stdioClient], ['streamable HTTP', httpClient]]) {
  describe(`paid MCP tools over ${name}`, () => {
    let conn;
    before(async () => {
      conn = await connect();
    });
    after(() => conn?.close());

    async function payer(amount, extra = {}) {
      const wallet = Wallet.generate();
      if (amount !== '0') await topUp(fac.url, wallet.address, amount);
      return { wallet, client: new VlexivoClient({ walletKey: wallet.exportKey(), facilitatorUrl: fac.url, ...extra }) };
    }

    test('the tools are listed; an unpaid call is -32402 with the challenge and the price', async () => {
      const { tools } = await conn.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['analyze', 'flaky', 'free', 'loyal', 'sized']);
      await assert.rejects(conn.client.callTool({ name: 'analyze', arguments: { text: 'abc' } }), (e) => {
        assert.ok(e instanceof McpError, String(e));
        assert.equal(e.code, PAYMENT_REQUIRED);
        assert.equal(e.data.error, 'payment_required');
        assert.equal(e.data.price, '0.01');
        assert.equal(e.data.status, 402);
        assert.equal(typeof e.data.challenge, 'string');
        return true;
      });
      // A forged proof is refused with a fresh challenge; a price that is not one is a
      // provider fault (-32603 price_invalid), never a free call.
      await assert.rejects(conn.client.callTool({ name: 'analyze', arguments: { text: 'abc' }, _meta: { 'vlexivo/proof': 'not.a.token' } }), (e) => {
        assert.equal(e.code, PAYMENT_REQUIRED);
        assert.equal(e.data.error, 'token_malformed');
        assert.equal(typeof e.data.challenge, 'string');
        return true;
      });
      await assert.rejects(conn.client.callTool({ name: 'sized', arguments: { size: 'lots' } }), (e) => {
        assert.equal(e.code, -32603);
        assert.equal(e.data.error, 'price_invalid');
        return true;
      });
      const free = await conn.client.callTool({ name: 'free', arguments: {} });
      assert.equal(parse(free).free, true);
    });

    test('the client pays once and gets the result with the receipt; the proof replayed is refused', async () => {
      const { wallet, client } = await payer('1');
      const result = await callPaidTool(conn.client, client, { name: 'analyze', arguments: { text: 'abc' } }, { origin: ORIGIN });
      const out = parse(result);
      assert.equal(out.out, 'cba');
      assert.equal(out.payer, wallet.address);
      assert.equal(out.amount, '0.01');
      assert.match(result._meta['vlexivo/receipt'], /amount=0\.01;/);
      assert.equal(await balance(fac.url, wallet.address), '0.99');
      const proofs = [];
      const second = parse(await callPaidTool(recording(conn.client, proofs), client, { name: 'analyze', arguments: { text: 'x' } }, { origin: ORIGIN }));
      assert.equal(second.runs, out.runs + 1);
      assert.equal(proofs.length, 1);
      await assert.rejects(conn.client.callTool({ name: 'analyze', arguments: { text: 'x' }, _meta: { 'vlexivo/proof': proofs[0] } }), (e) => {
        assert.equal(e.code, PAYMENT_REQUIRED);
        assert.equal(e.data.error, 'token_replayed');
        assert.equal(e.data.status, 409);
        return true;
      });
      const after = parse(await callPaidTool(conn.client, client, { name: 'analyze', arguments: { text: 'y' } }, { origin: ORIGIN }));
      assert.equal(after.runs, out.runs + 2, 'one run per paid call, none for the replay');
    });

    test('a failing tool does not consume the proof: the retry uses it, paid once', async () => {
      const { wallet, client } = await payer('1');
      const failed = await callPaidTool(conn.client, client, { name: 'flaky', arguments: {} }, { origin: ORIGIN });
      assert.equal(failed.isError, true);
      assert.equal(failed._meta?.['vlexivo/receipt'], undefined);
      assert.equal(await balance(fac.url, wallet.address), '0.998');
      const ok = await callPaidTool(conn.client, client, { name: 'flaky', arguments: {} }, { origin: ORIGIN });
      assert.equal(parse(ok).ok, true);
      assert.equal(await balance(fac.url, wallet.address), '0.998', 'the same proof, no second payment');
    });

    test('a price from the arguments over the cap is refused before paying', async () => {
      const { wallet, client } = await payer('1', { maxPerCall: '0.005' });
      await assert.rejects(callPaidTool(conn.client, client, { name: 'sized', arguments: { size: 10 } }, { origin: ORIGIN }), (e) => {
        assert.ok(e instanceof VlexivoBudgetError, String(e));
        return true;
      });
      assert.equal(await balance(fac.url, wallet.address), '1');
      const ok = parse(await callPaidTool(conn.client, client, { name: 'sized', arguments: { size: 3 } }, { origin: ORIGIN }));
      assert.equal(ok.amount, '0.003');
      assert.equal(await balance(fac.url, wallet.address), '0.997');
    });

    test('the payer hint rides in _meta: the resolver prices for the payer, the proven payer pays that', async () => {
      const { wallet, client } = await payer('1');
      await assert.rejects(conn.client.callTool({ name: 'loyal', arguments: {} }), (e) => e.code === PAYMENT_REQUIRED && e.data.price === '0.002');
      const paid = parse(await callPaidTool(conn.client, client, { name: 'loyal', arguments: {} }, { origin: ORIGIN }));
      assert.equal(paid.amount, '0.001');
      assert.equal(await balance(fac.url, wallet.address), '0.999');
    });

    test('a challenge for another origin is refused before paying', async () => {
      const { wallet, client } = await payer('1');
      await assert.rejects(callPaidTool(conn.client, client, { name: 'analyze', arguments: { text: 'a' } }, { origin: 'https://other.example' }), (e) => {
        assert.equal(e.code, 'challenge_mismatch', String(e));
        return true;
      });
      assert.equal(await balance(fac.url, wallet.address), '1');
    });
  });
}
