// The one median every benchmark here reports: the middle value of an odd count, the mean of
// the two middle values of an even one (taking either middle value alone would bias a figure
// taken over an even number of rounds up or down).
export const median = (a) => {
  if (a.length === 0) throw new Error('median of no values');
  const s = [...a].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
