// The article's dynamic data pricing: an async priceResolver on a mounted path. Run:
//   VLX_SECRET_KEY=sk_test_… node data-pricing-server.mjs
import express from 'express';
import { VlexivoServer } from 'vlexivo';

const app = express();
const vlx = new VlexivoServer({ apiSecret: process.env.VLX_SECRET_KEY });

function getDaysBetween(dateRange) {
  // "2024-01-01..2024-03-31" → days; a single year ("2021") → 365.
  const [from, to] = String(dateRange ?? '').split('..');
  if (!to) return 365;
  return Math.max(1, Math.round((Date.parse(to) - Date.parse(from)) / 86_400_000));
}

app.use(
  '/api/v1/data',
  vlx.paywall({
    priceResolver: async (req) => {
      const { dateRange, granularity } = req.query;
      // Price based on data complexity
      const dayCount = getDaysBetween(dateRange);
      const isRealTime = granularity === 'tick';
      const isHistorical = new Date().getFullYear() - parseInt(dateRange) > 2;
      let price = 0.001; // base: $0.001
      price += dayCount * 0.00001; // + $0.00001 per day of data
      if (isRealTime) price *= 10; // 10x for real-time
      if (isHistorical) price *= 0.5; // 50% discount for old data
      return price.toFixed(6);
    },
  }),
);

app.get('/api/v1/data', (req, res) => {
  res.json({ rows: [], dataType: req.query.dataType ?? 'ohlc', charged: req.vlxPayment.amount });
});

const port = Number(process.env.PORT ?? 3001);
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
