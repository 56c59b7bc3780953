// The benchmarks' one median (bench/stats.mjs): an even number of rounds reports the mean of the
// two middle values, not the larger one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median } from '../bench/stats.mjs';

test('median: the middle value of an odd count, the mean of the two middle values of an even one', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([10, 30]), 20);
  assert.equal(median([7]), 7);
  const rounds = [0.93, 0.88, 0.91, 0.86];
  assert.equal(median(rounds), (0.88 + 0.91) / 2);
  assert.deepEqual(rounds, [0.93, 0.88, 0.91, 0.86], 'the input is left as it was');
  assert.throws(() => median([]), /no values/);
});
