// A paid MCP server for the tests and the benchmark: `analyze` (fixed price), `sized` (priced
// from its arguments), `flaky` (fails while `fail` is true), `free` (no price). Over stdio when
// run as a script (options from the environment), or built in process by `buildServer`.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import { VlexivoServer } from 'vlexivo';
import { paidTool } from 'vlexivo/mcp';

export function buildServer(serverOptions) {
  const vlx = new VlexivoServer(serverOptions);
  const mcp = new McpServer({ name: 'vlexivo-test-tools', version: '1.0.0' });
  const runs = { analyze: 0, sized: 0, flaky: 0, free: 0 };
  const text = (o) => ({ content: [{ type: 'text', text: JSON.stringify(o) }] });
  paidTool(mcp, vlx, 'analyze', { description: 'Reverse a text', inputSchema: { text: z.string() } }, { price: '0.01' }, async ({ text: t }, extra) => {
    runs.analyze += 1;
    return text({ out: [...t].reverse().join(''), payer: extra.vlxPayment.payer, amount: extra.vlxPayment.amount, runs: runs.analyze });
  });
  paidTool(
    mcp,
    vlx,
    'sized',
    { description: 'A price from the arguments', inputSchema: { size: z.number().int() } },
    { priceResolver: (args) => (0.001 * Number(args.size)).toFixed(3) },
    async ({ size }, extra) => {
      runs.sized += 1;
      return text({ size, amount: extra.vlxPayment.amount, runs: runs.sized });
    },
  );
  let failures = 1;
  paidTool(mcp, vlx, 'flaky', { description: 'Fails once, then works' }, { price: '0.002' }, async () => {
    runs.flaky += 1;
    if (failures > 0) {
      failures -= 1;
      throw new Error('backend down');
    }
    return text({ ok: true, runs: runs.flaky });
  });
  paidTool(mcp, vlx, 'loyal', { description: 'Cheaper for a payer who names itself', inputSchema: { note: z.string().optional() } }, { priceResolver: (_args, payer) => (payer ? '0.001' : '0.002') }, async (_args, extra) =>
    text({ amount: extra.vlxPayment.amount }),
  );
  mcp.registerTool('free', { description: 'No price' }, async () => {
    runs.free += 1;
    return text({ free: true, runs: runs.free });
  });
  return { mcp, vlx, runs };
}

if (process.argv[1] && import.meta.url === new URL(process.argv[1], 'file://').href) {
  const { mcp } = buildServer({
    apiSecret: process.env.VLX_SECRET_KEY,
    facilitatorUrl: process.env.VLX_FACILITATOR_URL,
    origin: process.env.VLX_MCP_ORIGIN,
  });
  await mcp.connect(new StdioServerTransport());
}
