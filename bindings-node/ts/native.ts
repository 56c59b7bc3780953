// The napi-rs addon (generated loader in ../native). A plain `require` keeps property access
// direct (no interop wrapper) on the hot path.
import native = require('../native/index.js');

export = native;
