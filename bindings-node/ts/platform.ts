// Which prebuilt binary this machine needs, and one clear error when it is not installed. The
// binary ships in a package per platform (`vlexivo-linux-x64-gnu`, …), an optional dependency
// of `vlexivo`; npm installs the one whose os/cpu/libc fit.

interface Manifest {
  version: string;
  optionalDependencies?: Record<string, string>;
}

/** `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`: napi-rs' names for this machine. */
export function platformTag(): string {
  let abi = '';
  if (process.platform === 'linux') {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    abi = header?.glibcVersionRuntime ? '-gnu' : '-musl';
  } else if (process.platform === 'win32') {
    abi = '-msvc';
  }
  return `${process.platform}-${process.arch}${abi}`;
}

/** Load the native module, or throw `VlexivoPlatformError` saying what to install. */
export function loadNative(load: () => unknown): unknown {
  try {
    return load();
  } catch (cause) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- read only on this error path
    const pkg = require('../package.json') as Manifest;
    const tag = platformTag();
    const prebuilt = Object.keys(pkg.optionalDependencies ?? {})
      .filter((n) => n.startsWith('vlexivo-'))
      .map((n) => n.slice('vlexivo-'.length))
      .sort();
    const wanted = `vlexivo-${tag}`;
    let message: string;
    if (!prebuilt.includes(tag)) {
      message =
        `vlexivo ${pkg.version} has no prebuilt binary for this platform (${tag}, Node ${process.versions.node}). ` +
        `Prebuilt: ${prebuilt.join(', ')}. On another platform, build the addon from source ` +
        `(bindings-node in https://github.com/vlexivo/vlexivo, needs Rust).`;
    } else if (!resolvable(wanted)) {
      message =
        `vlexivo ${pkg.version}: the native binary for this platform (${tag}) is not installed. It comes in ` +
        `the optional package ${wanted}@${pkg.version}: reinstall without --omit=optional / --no-optional, ` +
        `or run \`npm install ${wanted}@${pkg.version}\`.`;
    } else {
      message =
        `vlexivo ${pkg.version}: ${wanted} is installed but its binary does not load on this machine ` +
        `(Node ${process.versions.node}): ${rootCause(cause)}`;
    }
    const err = new Error(message);
    err.name = 'VlexivoPlatformError';
    // An installation problem, not a bug: the sentence is the whole story, so no stack and no
    // `cause` chain is printed (the loader's error stays readable as `loadError`).
    err.stack = `${err.name}: ${message}`;
    Object.defineProperty(err, 'loadError', { value: cause, enumerable: false });
    throw err;
  }
}

function resolvable(name: string): boolean {
  try {
    require.resolve(`${name}/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** The first specific reason in napi-rs' chain of load errors (a dlopen message, a version
 *  mismatch), past its generic "Cannot find native binding". */
function rootCause(e: unknown): string {
  const reasons: string[] = [];
  for (let cur = e, depth = 0; cur instanceof Error && depth < 10; cur = cur.cause, depth++) {
    reasons.push(cur.message.split('\n')[0]);
  }
  return reasons.find((r) => !r.startsWith('Cannot find native binding')) ?? reasons[0] ?? String(e);
}
