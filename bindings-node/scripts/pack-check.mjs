// Packaging check, as a user without Rust meets the package: `npm pack` the main package (JS
// and types only) and this platform's binary package (`vlexivo-linux-x64-gnu`, laid out as
// npm/linux-x64-gnu/), install both with express into an empty project outside the repository
// with no Rust toolchain on PATH, and run the Express example end to end there against a real
// facilitator with the agent example paying. Then the two failures a user can meet: a platform
// with no prebuilt binary, and the binary package left out (--omit=optional): each one clear
// sentence, no stack trace. Prints the tarball sizes and the install time. Exits non-zero on
// any failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, readdirSync, readFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, delimiter, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { pkgRoot, startFacilitator, onboard } from '../test/helpers.mjs';

const work = mkdtempSync(join(tmpdir(), 'vlx-pack-'));
const children = [];
const log = (m) => console.log(`[pack-check] ${m}`);
const manifest = JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8'));
const platform = 'linux-x64-gnu';
const binary = `vlexivo.${platform}.node`;

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

function pack(dir, dest) {
  const info = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dest], { cwd: dir, encoding: 'utf8' }))[0];
  return { tgz: join(dest, info.filename), files: info.files.map((f) => f.path), size: info.size, unpacked: info.unpackedSize, name: info.filename };
}

/** PATH without any directory that holds cargo or rustc: what a user without Rust has. */
function pathWithoutRust() {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d && !['cargo', 'rustc'].some((b) => existsSync(join(d, b))));
  return dirs.join(delimiter);
}

function emptyApp(name) {
  const app = join(work, name);
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: `vlx-${name}`, private: true, version: '0.0.0' }));
  return app;
}

/** Run node in `cwd`; returns { status, stderr } (the process must fail for these checks). */
function nodeFails(cwd, env, code) {
  const r = spawnSync(process.execPath, ['-e', code], { cwd, env, encoding: 'utf8', timeout: 30000 });
  return { status: r.status, stderr: r.stderr };
}

function assertOneSentence(what, stderr, ...needles) {
  for (const n of needles) if (!stderr.includes(n)) throw new Error(`${what}: "${n}" missing from:\n${stderr}`);
  if (/^\s+at /m.test(stderr)) throw new Error(`${what}: a stack trace was printed:\n${stderr}`);
}

let fac;
try {
  const packDir = join(work, 'pack');
  mkdirSync(packDir);
  // What `napi pre-publish` does before `npm publish`: the main package gets one optional
  // dependency per platform package (npm/<platform>/package.json). It refuses to run without
  // every platform's binary, so the same edit is made here on a staged copy of what npm packs.
  const platforms = readdirSync(join(pkgRoot, 'npm')).map((d) => JSON.parse(readFileSync(join(pkgRoot, 'npm', d, 'package.json'), 'utf8')));
  if (platforms.length !== manifest.napi.targets.length) throw new Error('npm/ has a directory per napi target, no more');
  const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: pkgRoot, encoding: 'utf8' }))[0].files.map((f) => f.path);
  const mainStage = join(work, 'stage', 'vlexivo');
  for (const f of packed) {
    mkdirSync(dirname(join(mainStage, f)), { recursive: true });
    copyFileSync(join(pkgRoot, f), join(mainStage, f));
  }
  const published = { ...manifest, optionalDependencies: Object.fromEntries(platforms.map((p) => [p.name, p.version])) };
  delete published.scripts.prepack;
  writeFileSync(join(mainStage, 'package.json'), JSON.stringify(published, null, 2));
  const main = pack(mainStage, packDir);
  log(`${main.name}: ${main.files.length} files, ${(main.size / 1e3).toFixed(0)} kB packed, ${(main.unpacked / 1e3).toFixed(0)} kB unpacked`);
  for (const want of [/^native\/index\.js$/, /^native\/index\.d\.ts$/, /^dist\/index\.js$/, /^dist\/index\.d\.ts$/, /^dist\/platform\.js$/, /^dist\/esm\/index\.mjs$/, /^dist\/esm\/index\.d\.mts$/, /^dist\/fastify\.js$/, /^dist\/hapi\.d\.ts$/, /^LICENSE$/]) {
    if (!main.files.some((f) => want.test(f))) throw new Error(`${main.name} lacks ${want}`);
  }
  if (main.files.some((f) => f.endsWith('.node'))) throw new Error(`${main.name} ships a native binary: it belongs in the vlexivo-<platform> packages`);
  if (main.files.some((f) => f.startsWith('ts/') || f.startsWith('src/') || f.startsWith('test/'))) throw new Error('tarball ships sources or tests');
  // The release workflow builds every target the package promises.
  const workflow = readFileSync(join(pkgRoot, '..', '.github', 'workflows', 'release.yml'), 'utf8');
  const addonJob = workflow.split('\n  node-addon:')[1].split('\n  node-test:')[0];
  for (const t of manifest.napi.targets) if (!addonJob.includes(`target: ${t}`)) throw new Error(`release.yml does not build ${t}`);

  // This platform's package, staged as napi-rs' npm/<platform> directory plus the built addon.
  const stage = join(work, 'stage', platform);
  mkdirSync(stage, { recursive: true });
  for (const f of readdirSync(join(pkgRoot, 'npm', platform))) copyFileSync(join(pkgRoot, 'npm', platform, f), join(stage, f));
  copyFileSync(join(pkgRoot, 'native', binary), join(stage, binary));
  copyFileSync(join(pkgRoot, '..', 'LICENSE'), join(stage, 'LICENSE'));
  const plat = pack(stage, packDir);
  log(`${plat.name}: ${plat.files.join(', ')}; ${(plat.size / 1e6).toFixed(2)} MB packed, ${(plat.unpacked / 1e6).toFixed(2)} MB unpacked`);
  if (!plat.files.includes(binary)) throw new Error(`${plat.name} lacks ${binary}`);
  const platManifest = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8'));
  if (platManifest.version !== manifest.version || published.optionalDependencies[platManifest.name] !== manifest.version) {
    throw new Error(`${platManifest.name}@${platManifest.version} does not match vlexivo's optionalDependencies`);
  }

  // An empty project, no Rust on PATH.
  const env = { ...process.env, PATH: pathWithoutRust() };
  if (spawnSync('cargo', ['--version'], { env }).status === 0) throw new Error('cargo is still on PATH');
  const app = emptyApp('app');
  const t0 = process.hrtime.bigint();
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', plat.tgz, main.tgz, 'express@5'], { cwd: app, env, stdio: 'inherit' });
  log(`npm install (both tarballs + express, warm npm cache): ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`);
  if (existsSync(join(app, 'node_modules', 'vlexivo', 'native', binary))) throw new Error('the binary was installed inside vlexivo');
  if (!existsSync(join(app, 'node_modules', `vlexivo-${platform}`, binary))) throw new Error(`vlexivo-${platform} was not installed`);
  for (const f of ['express-inference-server.mjs', 'agent.mjs']) copyFileSync(join(pkgRoot, 'examples', f), join(app, f));
  // CommonJS and ESM both load from the installed packages.
  execFileSync(process.execPath, ['-e', "const v=require('vlexivo'); if (typeof v.VlexivoServer !== 'function' || typeof require('vlexivo/fastify').default !== 'function') process.exit(1)"], { cwd: app, env, stdio: 'inherit' });
  execFileSync(process.execPath, ['--input-type=module', '-e', "import { VlexivoClient } from 'vlexivo'; import { plugin } from 'vlexivo/hapi'; if (!VlexivoClient || plugin.name !== 'vlexivo') process.exit(1)"], { cwd: app, env, stdio: 'inherit' });
  // No test-only entry point ships: the installed native module and its declared types lack them.
  const nativeJs = join(app, 'node_modules', 'vlexivo', 'native', 'index.js');
  const exported = execFileSync(process.execPath, ['-e', `console.log(Object.keys(require(${JSON.stringify(nativeJs)})).join(' '))`], { cwd: app, env, encoding: 'utf8' }).trim().split(' ');
  if (exported.length < 10) throw new Error(`the installed native module exports only ${exported}`);
  const dts = readFileSync(join(app, 'node_modules', 'vlexivo', 'native', 'index.d.ts'), 'utf8');
  for (const name of ['mintProofToken', 'randomId', 'ProofClaimsInput']) {
    if (exported.includes(name) || dts.includes(name)) throw new Error(`the package ships the test-only ${name}`);
  }

  fac = await startFacilitator();
  const provider = await onboard(fac.url);
  const runEnv = { ...env, VLX_SECRET_KEY: provider.api_secret, VLX_FACILITATOR_URL: fac.url, PORT: '0' };
  const server = spawn(process.execPath, ['express-inference-server.mjs'], { cwd: app, env: runEnv, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(server);
  const [, url] = await waitLine(server, /listening on (http:\/\/\S+)/, 'example server');
  log(`example server at ${url}`);
  const agentOut = execFileSync(process.execPath, ['agent.mjs'], { cwd: app, env: { ...runEnv, API_URL: url }, encoding: 'utf8', timeout: 60000 });
  process.stdout.write(agentOut);
  const paid = (agentOut.match(/^paid /gm) ?? []).length;
  if (paid !== 3 || !/task 2: .*"paid":"0\.01"/.test(agentOut) || !/agent done: spent 0\.0111 usd/.test(agentOut)) {
    throw new Error('agent example did not pay for its three tasks as expected');
  }

  // A platform with no prebuilt binary: one sentence naming it and the ones that exist.
  const aix = nodeFails(app, env, "Object.defineProperty(process, 'platform', { value: 'aix' }); require('vlexivo')");
  if (aix.status === 0) throw new Error('vlexivo loaded on a pretended aix');
  assertOneSentence('unsupported platform', aix.stderr, 'VlexivoPlatformError', 'no prebuilt binary for this platform (aix-x64', 'Prebuilt: darwin-arm64, darwin-x64, linux-arm64-gnu, linux-x64-gnu, linux-x64-musl, win32-x64-msvc');
  // The binary package left out: the sentence names the package to install.
  const bare = emptyApp('bare');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--omit=optional', main.tgz], { cwd: bare, env, stdio: 'inherit' });
  const missing = nodeFails(bare, env, "require('vlexivo')");
  assertOneSentence('binary package not installed', missing.stderr, `not installed`, `npm install vlexivo-${platform}@${manifest.version}`);
  // Installed but not loadable (here: a damaged file): the loader's own reason, not a guess.
  writeFileSync(join(app, 'node_modules', `vlexivo-${platform}`, binary), 'not an ELF file');
  const broken = nodeFails(app, env, "require('vlexivo')");
  assertOneSentence('binary does not load', broken.stderr, `vlexivo-${platform} is installed but its binary does not load`);
  log('ok: installs without Rust from the two tarballs, the Express example runs end to end, and a missing binary is one clear sentence');
} catch (e) {
  console.error(`[pack-check] FAILED: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await fac?.stop();
  rmSync(work, { recursive: true, force: true });
}
