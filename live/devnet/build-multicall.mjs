// Compile contracts/Multicall3.sol with npm solc (the wasm compiler: solc downloaders do not work
// here) into live/src/multicall3.json, which is checked in (inside src/, so the crate packages it)
// and deployed by the devnet.
import solc from 'solc';
import { readFileSync, writeFileSync } from 'node:fs';

const source = readFileSync(new URL('./contracts/Multicall3.sol', import.meta.url), 'utf8');
const input = {
  language: 'Solidity',
  sources: { 'Multicall3.sol': { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors ?? []).filter((e) => e.severity === 'error');
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join('\n'));
  process.exit(1);
}
const c = out.contracts['Multicall3.sol'].Multicall3;
const artifact = {
  contractName: 'Multicall3',
  compiler: `solc ${solc.version()}`,
  settings: input.settings,
  abi: c.abi,
  bytecode: `0x${c.evm.bytecode.object}`,
};
writeFileSync(new URL('../src/multicall3.json', import.meta.url), `${JSON.stringify(artifact, null, 2)}\n`);
console.log(`live/src/multicall3.json: ${c.evm.bytecode.object.length / 2} bytes of creation code`);
