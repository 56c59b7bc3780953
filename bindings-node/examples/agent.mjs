// The article's agent loop: a client that pays per call, tops its sandbox wallet up on its own,
// and knows exactly why it stopped when it cannot pay. Run against a paid API:
//   API_URL=http://127.0.0.1:3000 node agent.mjs
// (VLX_WALLET_KEY is optional here: a fresh sandbox wallet is made when it is unset.)
import { VlexivoClient, VlexivoInsufficientFundsError, VlexivoBudgetError, Wallet } from 'vlexivo';

const walletKey = process.env.VLX_WALLET_KEY ?? Wallet.generate().exportKey();
const apiUrl = process.env.API_URL ?? 'http://127.0.0.1:3000';

const agent = new VlexivoClient({
  walletKey,
  baseUrl: apiUrl,
  autoTopUp: {
    enabled: true,
    triggerBalance: '1.00', // top up when balance drops below $1
    topUpAmount: '10.00', // add $10 each time
  },
  maxTotal: '1.00', // never spend more than $1 in this run
  onPayment: (p) => console.log(`paid ${p.amount} ${p.currency} (tx ${p.txHash.slice(0, 10)}…, balance ${p.balance})`),
});

async function notifyUser({ message, taskId }) {
  console.log(`[task ${taskId}] ${message}`);
}

async function runAgentTask(task) {
  try {
    const result = await agent.fetch('/api/v1/inference', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: task.model, prompt: task.document }),
    });
    return await result.json();
  } catch (err) {
    if (err instanceof VlexivoInsufficientFundsError) {
      // Agent knows exactly why it failed and what it costs
      await notifyUser({ message: `Task paused: needs $${err.requiredAmount} to continue`, taskId: task.id });
    } else if (err instanceof VlexivoBudgetError) {
      await notifyUser({ message: `Task paused: ${err.limit} budget left ${err.remaining}`, taskId: task.id });
    }
    throw err;
  }
}

const tasks = [
  { id: 1, model: 'small-v1', document: 'summarize this' },
  { id: 2, model: 'large-v2', document: 'analyze that' },
  { id: 3, model: 'embed-v1', document: 'embed me' },
];
for (const task of tasks) {
  const out = await runAgentTask(task);
  console.log(`task ${task.id}: ${JSON.stringify(out)}`);
}
console.log(`agent done: spent ${agent.spent} usd`);
