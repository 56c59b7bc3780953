// The Express target of bench/discount.mjs: one route at a fixed price, one priced by the
// article's usage-based resolver (same app, same server, same paywall). Prints PORT=<n>.
import express from 'express';
import { VlexivoServer } from 'vlexivo';

const vlx = new VlexivoServer({ apiSecret: process.env.SECRET, facilitatorUrl: process.env.FAC });
const since = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1));
const app = express();
app.get('/fixed', vlx.paywall({ price: '0.001' }), (_req, res) => res.json({ ok: true }));
app.get(
  '/usage',
  vlx.paywall({
    priceResolver: async (_req, payer) => {
      if (payer === null) return '0.001';
      const { count } = await vlx.usage(payer, { since });
      return count >= 10 ? '0.0005' : '0.001';
    },
  }),
  (_req, res) => res.json({ ok: true }),
);
const server = app.listen(0, '127.0.0.1', () => console.log(`PORT=${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
