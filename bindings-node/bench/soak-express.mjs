// The soak benchmark's Express API (scripts/soak.sh starts it): one paid route behind the
// paywall on the nonce store named by SOAK_STORE, and an unpaid /stats route that says how
// many times the paid handler ran (the soak compares it with the facilitator's ledger).
// Prints `listening on URL` once it serves; binds 127.0.0.1 on a port the system picks.
import express from 'express';
import { VlexivoServer } from 'vlexivo';

const vlx = new VlexivoServer({
  apiSecret: process.env.VLX_SECRET_KEY,
  facilitatorUrl: process.env.VLX_FACILITATOR_URL,
  mode: 'sandbox',
  challengeTtl: Number(process.env.SOAK_CHALLENGE_TTL ?? 30),
  leeway: 0,
  nonceStore: process.env.SOAK_STORE ?? 'memory',
  nonceStoreOptions: process.env.SOAK_STORE_PREFIX ? { prefix: process.env.SOAK_STORE_PREFIX } : undefined,
});

let handled = 0;
const app = express();
app.get('/paid', vlx.paywall({ price: '0.001' }), (req, res) => {
  handled += 1;
  res.json({ n: req.query.n, paidBy: req.vlxPayment.payer });
});
app.get('/stats', (_req, res) => {
  res.json({ handled, storeFailures: vlx.storeFailures });
});
app.use(vlx.errorHandler());

const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
