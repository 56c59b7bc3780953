// The napi-rs addon (generated loader in ../native, which finds this platform's
// `vlexivo-<platform>` package). A plain `require` keeps property access direct (no interop
// wrapper) on the hot path; `platform` turns a missing binary into one clear error first.
import { loadNative } from './platform';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- a thunk, so platform can catch the load
loadNative(() => require('../native/index.js'));

import native = require('../native/index.js');

export = native;
