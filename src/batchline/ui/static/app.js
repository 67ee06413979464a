// Live run page: the summary over server-sent events, the throughput chart with uPlot.
(function () {
  "use strict";
  var section = document.getElementById("run");
  if (!section) { return; }
  var fmt = new Intl.NumberFormat();
  function text(id, value) {
    var node = document.getElementById(id);
    if (node && value !== undefined) { node.textContent = value; }
  }
  function number(value, digits) {
    if (value === null || value === undefined) { return "-"; }
    return digits ? value.toFixed(digits) : fmt.format(value);
  }
  function duration(seconds) {
    if (seconds < 60) { return seconds.toFixed(1) + "s"; }
    var m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
    if (m < 60) { return m + "m " + String(s).padStart(2, "0") + "s"; }
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  var chartNode = document.getElementById("chart");
  var plot = null;
  function drawChart() {
    if (!chartNode || typeof uPlot === "undefined") { return; }
    fetch(chartNode.dataset.series).then(function (r) { return r.json(); }).then(function (data) {
      var empty = document.getElementById("chart-empty");
      if (!data.t.length) { if (empty) { empty.hidden = false; } return; }
      if (empty) { empty.hidden = true; }
      var rows = [data.t, data.succeeded, data.failed];
      if (plot) { plot.setData(rows); return; }
      plot = new uPlot({
        width: Math.max(320, chartNode.clientWidth - 10), height: 220,
        series: [{}, { label: "succeeded/s", stroke: "#12805c", fill: "rgba(18,128,92,.08)" },
                 { label: "failed/s", stroke: "#c4320a" }],
        axes: [{}, { label: "items/s" }]
      }, rows, chartNode);
    }).catch(function () {});
  }
  drawChart();
  if (section.dataset.active !== "true" || typeof EventSource === "undefined") { return; }
  var params = "s=" + encodeURIComponent(section.dataset.source) + "&id=" + encodeURIComponent(section.dataset.runId);
  var events = new EventSource("/events?" + params);
  events.onmessage = function (message) {
    var run = JSON.parse(message.data);
    text("run-status", run.status);
    text("run-succeeded", number(run.succeeded));
    text("run-failed", number(run.failed));
    text("run-pending", number(run.pending));
    text("run-total", number(run.total_items));
    text("run-rate", number(run.items_per_second, 1));
    text("run-duration", duration(run.duration));
    text("run-retries", number(run.retries));
    if (run.percentage !== null) {
      var bar = document.getElementById("run-progress");
      if (bar) { bar.value = run.percentage; }
      text("run-percentage", run.percentage.toFixed(1) + "%");
    }
    var status = document.getElementById("run-status");
    if (status) { status.className = "badge " + run.status; }
    if (!run.active) { var live = document.getElementById("live"); if (live) { live.remove(); } }
    drawChart();
  };
  events.addEventListener("idle", function () { events.close(); });
}());
