// The article's TypeScript snippets, type-checked against the package's .d.ts
// (`npx tsc -p examples/tsconfig.json`); not run.
import express from 'express';
import { VlexivoServer, VlexivoClient, VlexivoInsufficientFundsError } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { plugin as vlexivoHapi } from 'vlexivo/hapi';

const app = express();
const vlx = new VlexivoServer({
  apiSecret: process.env.VLX_SECRET_KEY,
  mode: 'live',
});
const perCallBilling = vlx.paywall({
  price: '0.001',
  currency: 'usd',
  scope: 'per-call',
  priceResolver: (req) => {
    const model = req.body?.model as string;
    if (model?.includes('large')) return '0.01';
    if (model?.includes('embed')) return '0.0001';
    return '0.001';
  },
});
declare function runInference(model: string, prompt: string): Promise<{ tokenCount: number }>;
app.post('/api/v1/inference', perCallBilling, async (req, res) => {
  const { model, prompt } = req.body as { model: string; prompt: string };
  const payer: string | undefined = req.vlxPayment?.payer;
  const result = await runInference(model, prompt);
  res.json({ result, payer, usage: { tokens: result.tokenCount } });
});

declare function getDaysBetween(range: string): number;
app.use('/api/v1/data', vlx.paywall({
  priceResolver: async (req) => {
    const { dateRange, granularity } = req.query;
    const dayCount = getDaysBetween(dateRange as string);
    const isRealTime = granularity === 'tick';
    const isHistorical = (new Date()).getFullYear() - parseInt(dateRange as string) > 2;
    let price = 0.001;
    price += dayCount * 0.00001;
    if (isRealTime) price *= 10;
    if (isHistorical) price *= 0.5;
    return price.toFixed(6);
  },
}));

const client = new VlexivoClient({
  walletKey: process.env.VLX_WALLET_KEY,
  autoTopUp: { enabled: true, triggerBalance: '1.00', topUpAmount: '10.00' },
});
declare const userPrompt: string;
async function call(): Promise<void> {
  const res = await client.fetch('https://api.provider.com/v1/inference', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'large-v2', prompt: userPrompt }),
  });
  const data = await res.json();
  console.log(data.result);
}

interface AgentTask { id: string; document: string }
declare const agentWalletKey: string;
declare function notifyUser(m: { message: string; taskId: string }): Promise<void>;
const agent = new VlexivoClient({ walletKey: agentWalletKey });
async function runAgentTask(task: AgentTask) {
  try {
    const result = await agent.fetch('/api/v1/analyze', {
      method: 'POST',
      body: JSON.stringify({ document: task.document }),
    });
    return await result.json();
  } catch (err) {
    if (err instanceof VlexivoInsufficientFundsError) {
      await notifyUser({ message: `Task paused: needs $${err.requiredAmount} to continue`, taskId: task.id });
    }
    throw err;
  }
}

// Fastify and Hapi registrations type-check too.
import Fastify from 'fastify';
import Hapi from '@hapi/hapi';
async function others(): Promise<void> {
  const f = Fastify();
  await f.register(vlexivoFastify, { server: vlx, price: '0.001' });
  f.post('/x', { config: { vlexivo: { price: '0.01' } } }, async (request) => ({ payer: request.vlxPayment?.payer }));
  const h = Hapi.server();
  await h.register({ plugin: vlexivoHapi, options: { server: vlx, price: 0.001 } });
}
void call; void runAgentTask; void others;

// The article's usage-based discount (README "Usage-based discounts"): the payer is the
// resolver's second argument, its count this month the facilitator's.
const startOfMonth = () => { const d = new Date(); return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)); };
app.get('/api/v1/discounted', vlx.paywall({
  priceResolver: async (req, payer) => {
    if (payer === null) return '0.001';
    const { count } = await vlx.usage(payer, { since: startOfMonth() });
    return count >= 10 ? '0.0005' : '0.001';
  },
}), (req, res) => {
  const who: string | undefined = req.vlxPayer?.address;
  res.json({ who });
});
