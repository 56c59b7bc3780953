// MCP paid tool call overhead vs an unpaid one, same run: a real McpServer and Client of
// @modelcontextprotocol/sdk over the SDK's in-memory transport (so the transport's own cost,
// equal for both, does not drown the difference). `free` is a plain registered tool; `paid` is
// the same tool behind vlexivo/mcp's paidTool, each call carrying a fresh pre-minted proof in
// `_meta` (verify + nonce consume + receipt). Rounds alternate the order (ABBA); prints the
// median µs per call of each and the ratio, then a BENCH json line.
// Run: node bench/mcp.mjs [callsPerRound=2000] [rounds=8]
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { VlexivoServer } from 'vlexivo';
import { paidTool } from 'vlexivo/mcp';
import { mintProofToken, randomNonce } from '../test/tokens.mjs';
import { SECRET, ORIGIN } from './tokens.mjs';
import { median } from './stats.mjs';

const CALLS = Number(process.argv[2] ?? 2000);
const ROUNDS = Number(process.argv[3] ?? 8);
const PAYER = '0x063a6Db64b4784deD0f350938bdb63Be12d3Db5a';

const vlx = new VlexivoServer({ apiSecret: SECRET, origin: ORIGIN, nonceStore: 'memory', nonceStoreOptions: { capacity: 2_000_000 } });
const mcp = new McpServer({ name: 'bench', version: '1.0.0' });
const result = { content: [{ type: 'text', text: 'ok' }] };
mcp.registerTool('free', { description: 'unpaid' }, async () => result);
paidTool(mcp, vlx, 'paid', { description: 'paid' }, { price: '0.001' }, async () => result);
const [a, b] = InMemoryTransport.createLinkedPair();
await mcp.connect(a);
const client = new Client({ name: 'bench', version: '1.0.0' });
await client.connect(b);

function proofs(n) {
  const now = Math.floor(Date.now() / 1000);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = mintProofToken(SECRET, {
      jti: randomNonce(),
      sub: PAYER,
      amt: '0.001',
      res: `POST ${ORIGIN}/mcp/tools/paid`,
      iat: now,
    });
  }
  return out;
}

/** Wall-clock and CPU (this process: client, server and transport) µs per call. */
async function run(kind) {
  const tokens = kind === 'paid' ? proofs(CALLS) : undefined;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) {
    const r = kind === 'paid'
      ? await client.callTool({ name: 'paid', arguments: {}, _meta: { 'vlexivo/proof': tokens[i] } })
      : await client.callTool({ name: 'free', arguments: {} });
    if (r.isError) throw new Error(`${kind} call failed`);
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e3 / CALLS;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / CALLS };
}

await run('free');
await run('paid');
const us = { free: [], paid: [] };
const cpu = { free: [], paid: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of round % 2 === 0 ? ['free', 'paid'] : ['paid', 'free']) {
    const r = await run(kind);
    us[kind].push(r.wall);
    cpu[kind].push(r.cpu);
  }
}
await client.close();
await mcp.close();
const free = median(us.free);
const paid = median(us.paid);
const freeCpu = median(cpu.free);
const paidCpu = median(cpu.paid);
console.log(`MCP tool call over the in-memory transport, ${ROUNDS} rounds of ${CALLS} calls (ABBA)`);
console.log(`wall: unpaid ${free.toFixed(1)} µs/call, paid ${paid.toFixed(1)} µs/call: +${(paid - free).toFixed(1)} µs, ratio ${(paid / free).toFixed(2)}`);
// CPU time does not count the time other processes had the cores: robust on a busy machine.
console.log(`CPU:  unpaid ${freeCpu.toFixed(1)} µs/call, paid ${paidCpu.toFixed(1)} µs/call: +${(paidCpu - freeCpu).toFixed(1)} µs, ratio ${(paidCpu / freeCpu).toFixed(2)}`);
console.log('BENCH ' + JSON.stringify({ bench: 'mcp', calls: CALLS, rounds: ROUNDS, freeUs: free, paidUs: paid, addedUs: paid - free, ratio: paid / free, freeCpuUs: freeCpu, paidCpuUs: paidCpu, addedCpuUs: paidCpu - freeCpu, cpuRatio: paidCpu / freeCpu }));
