// The article's Express inference server, as written: per-call billing in front of a route,
// with dynamic pricing by model. Run:
//   VLX_SECRET_KEY=sk_test_… VLX_FACILITATOR_URL=http://127.0.0.1:4020 node express-inference-server.mjs
import express from 'express';
import { VlexivoServer } from 'vlexivo';

const app = express();
app.use(express.json());

const vlx = new VlexivoServer({
  apiSecret: process.env.VLX_SECRET_KEY,
  mode: 'sandbox',
});

// Per-call billing middleware
// Returns 402 if no valid payment token present
const perCallBilling = vlx.paywall({
  price: '0.001', // $0.001 per call
  currency: 'usd',
  scope: 'per-call',
  // Optional: dynamic pricing based on model
  priceResolver: (req) => {
    const model = req.body?.model;
    if (model?.includes('large')) return '0.01';
    if (model?.includes('embed')) return '0.0001';
    return '0.001';
  },
});

async function runInference(model, prompt) {
  const text = `[${model}] ${String(prompt).split('').reverse().join('')}`;
  return { text, tokenCount: text.length };
}

// Protected inference endpoint
app.post('/api/v1/inference', perCallBilling, async (req, res) => {
  const { model, prompt } = req.body;
  // req.vlxPayment contains verified payment metadata
  // including payer address and amount paid
  const result = await runInference(model, prompt);
  res.json({ result, usage: { tokens: result.tokenCount }, paidBy: req.vlxPayment.payer, paid: req.vlxPayment.amount });
});

// A failed handler is not charged: the nonce is released and the same proof can be retried.
app.use(vlx.errorHandler());

const port = Number(process.env.PORT ?? 3000);
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
