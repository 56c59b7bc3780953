// The revenue chart: the series the page carries as JSON (no inline script: the CSP allows
// scripts from this origin only), drawn with uPlot. The same figures are in the table below it.
(function () {
  'use strict';
  var data = document.getElementById('vlx-series');
  var box = document.getElementById('vlx-chart');
  if (!data || !box || typeof uPlot === 'undefined') return;
  var s = JSON.parse(data.textContent);
  var width = function () { return Math.max(280, Math.min(box.clientWidth || 600, 960)); };
  var opts = {
    width: width(),
    height: 260,
    scales: { x: { time: true } },
    series: [
      {},
      { label: 'Revenue (USD)', stroke: '#1f5fbf', fill: 'rgba(31,95,191,0.15)', width: 2,
        value: function (u, v) { return v == null ? '' : v.toFixed(6); } },
    ],
    axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return '$' + v; }); } }],
  };
  var plot = new uPlot(opts, [s.t, s.usd], box);
  box.setAttribute('data-points', String(s.t.length));
  window.addEventListener('resize', function () { plot.setSize({ width: width(), height: 260 }); });
})();
