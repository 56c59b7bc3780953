// test/next-app, installed and built as a user's app would be: node_modules/vlexivo laid out
// as npm installs the package (the manifest, dist/, native/index.js, the addon linked), since
// `serverExternalPackages` only keeps packages in node_modules out of the bundle and a bundled
// addon does not build; then `next build` (production, Turbopack). Used by next.test.mjs and
// the Next.js targets of bench/http.mjs.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, symlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pkgRoot } from './helpers.mjs';

export const nextDir = join(pkgRoot, 'test', 'next-app');

export function installAndBuild() {
  const to = join(nextDir, 'node_modules', 'vlexivo');
  rmSync(to, { recursive: true, force: true });
  mkdirSync(join(to, 'native'), { recursive: true });
  cpSync(join(pkgRoot, 'package.json'), join(to, 'package.json'));
  cpSync(join(pkgRoot, 'dist'), join(to, 'dist'), { recursive: true });
  for (const f of ['index.js', 'index.d.ts']) cpSync(join(pkgRoot, 'native', f), join(to, 'native', f));
  const addon = 'vlexivo.linux-x64-gnu.node';
  symlinkSync(realpathSync(join(pkgRoot, 'native', addon)), join(to, 'native', addon));
  const build = spawnSync(process.execPath, [join(pkgRoot, 'node_modules', 'next', 'dist', 'bin', 'next'), 'build'], {
    cwd: nextDir,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (build.status !== 0) throw new Error(`next build failed (${build.status}):\n${build.stdout}\n${build.stderr}`);
}
