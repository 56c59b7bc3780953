// The shared vectors through every adapter of apps.mjs on a real server (vector-suites.mjs).
import { adapters } from './apps.mjs';
import { vectorSuites } from './vector-suites.mjs';

for (const [name, start] of Object.entries(adapters)) vectorSuites(name, start);
