// Packaging check: `npm pack`, install the tarball with express into an empty project outside
// the repository, and run the Express example end to end there against a real facilitator,
// with the agent example as the paying client. Exits non-zero on any failure.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pkgRoot, startFacilitator, onboard } from '../test/helpers.mjs';

const work = mkdtempSync(join(tmpdir(), 'vlx-pack-'));
const children = [];
const log = (m) => console.log(`[pack-check] ${m}`);

function waitLine(child, re, what) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const t = setTimeout(() => reject(new Error(`${what}: no ${re} in 30 s; output: ${seen}`)), 30000);
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (l) => {
      seen += l + '\n';
      const m = re.exec(l);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited ${code}: ${seen}`));
    });
  });
}

let fac;
try {
  const packDir = join(work, 'pack');
  execFileSync('mkdir', ['-p', packDir]);
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: pkgRoot, encoding: 'utf8' });
  const info = JSON.parse(out)[0];
  const tgz = join(packDir, info.filename);
  const files = info.files.map((f) => f.path);
  log(`${info.filename}: ${files.length} files, ${(info.size / 1e6).toFixed(1)} MB packed`);
  for (const want of [/^native\/vlexivo\.linux-x64-gnu\.node$/, /^native\/index\.js$/, /^native\/index\.d\.ts$/, /^dist\/index\.js$/, /^dist\/index\.d\.ts$/, /^dist\/esm\/index\.mjs$/, /^dist\/esm\/index\.d\.mts$/, /^dist\/fastify\.js$/, /^dist\/hapi\.d\.ts$/]) {
    if (!files.some((f) => want.test(f))) throw new Error(`tarball lacks ${want}`);
  }
  if (files.some((f) => f.startsWith('ts/') || f.startsWith('src/') || f.startsWith('test/'))) throw new Error('tarball ships sources or tests');

  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'vlx-pack-app', private: true, version: '0.0.0' }));
  log(`npm install ${info.filename} express (in ${app})`);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', tgz, 'express'], { cwd: app, stdio: 'inherit' });
  for (const f of ['express-inference-server.mjs', 'agent.mjs']) copyFileSync(join(pkgRoot, 'examples', f), join(app, f));
  // CommonJS and ESM both load from the installed package.
  execFileSync(process.execPath, ['-e', "const v=require('vlexivo'); if (typeof v.VlexivoServer !== 'function' || typeof require('vlexivo/fastify').default !== 'function') process.exit(1)"], { cwd: app, stdio: 'inherit' });
  execFileSync(process.execPath, ['--input-type=module', '-e', "import { VlexivoClient } from 'vlexivo'; import { plugin } from 'vlexivo/hapi'; if (!VlexivoClient || plugin.name !== 'vlexivo') process.exit(1)"], { cwd: app, stdio: 'inherit' });
  log(`installed: ${readdirSync(join(app, 'node_modules', 'vlexivo', 'native')).join(', ')}`);

  fac = await startFacilitator();
  const provider = await onboard(fac.url);
  const env = { ...process.env, VLX_SECRET_KEY: provider.api_secret, VLX_FACILITATOR_URL: fac.url, PORT: '0' };
  const server = spawn(process.execPath, ['express-inference-server.mjs'], { cwd: app, env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(server);
  const [, url] = await waitLine(server, /listening on (http:\/\/\S+)/, 'example server');
  log(`example server at ${url}`);
  const agentOut = execFileSync(process.execPath, ['agent.mjs'], { cwd: app, env: { ...env, API_URL: url }, encoding: 'utf8', timeout: 60000 });
  process.stdout.write(agentOut);
  const paid = (agentOut.match(/^paid /gm) ?? []).length;
  if (paid !== 3 || !/task 2: .*"paid":"0\.01"/.test(agentOut) || !/agent done: spent 0\.0111 usd/.test(agentOut)) {
    throw new Error('agent example did not pay for its three tasks as expected');
  }
  log('ok: tarball installs outside the repository and the Express example runs end to end');
} catch (e) {
  console.error(`[pack-check] FAILED: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await fac?.stop();
  rmSync(work, { recursive: true, force: true });
}
