/* vbench leaderboard: sortable and filterable tables, and the charts (plotly.js, loaded before this file).
 *
 * Sorting and filtering are this short script rather than a table library: a cell's sort key is written
 * into the page (data-value), the filter is a select and a search box over the row's text, and a library
 * would add a third-party file to ship and keep current for about the same number of lines. */
(function () {
  "use strict";

  function sortKey(cell, numeric) {
    if (!cell) return null;
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (numeric) {
      var value = parseFloat(raw);
      return isNaN(value) ? null : value;
    }
    return raw === "" || raw === "-" ? null : raw.toLowerCase();
  }

  /* Sort the rows by the clicked column: ascending first, then descending; cells without a value last. */
  function sortBy(table, header) {
    var headers = Array.prototype.slice.call(header.parentNode.children);
    var index = headers.indexOf(header);
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, position) {
      return { row: row, position: position, key: sortKey(row.cells[index], numeric) };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        return (a.key === null) - (b.key === null) || a.position - b.position;
      }
      var order = numeric ? a.key - b.key : a.key.localeCompare(b.key);
      return (ascending ? order : -order) || a.position - b.position;
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (item) { fragment.appendChild(item.row); });
    body.appendChild(fragment);
  }

  /* Show the rows whose facet (family, status) is the selected one and whose text holds every search word. */
  function applyFilter(table) {
    var facet = document.querySelector('[data-facet-for="' + table.id + '"]');
    var search = document.querySelector('[data-search-for="' + table.id + '"]');
    var count = document.querySelector('[data-count-for="' + table.id + '"]');
    var wanted = facet ? facet.value : "";
    var words = search ? search.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    var rows = table.tBodies[0].rows;
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var text = row.textContent.toLowerCase();
      var visible = (!wanted || row.getAttribute("data-facet") === wanted) &&
        words.every(function (word) { return text.indexOf(word) !== -1; });
      row.hidden = !visible;
      if (visible) shown++;
    }
    if (count) count.textContent = shown === rows.length ? rows.length + " rows" : shown + " of " + rows.length + " rows";
  }

  function setUpTables() {
    document.querySelectorAll("table.board").forEach(function (table) {
      table.tHead.querySelectorAll("th").forEach(function (header) {
        header.tabIndex = 0;
        header.addEventListener("click", function () { sortBy(table, header); });
        header.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, header); }
        });
      });
      var controls = document.querySelectorAll('[data-facet-for="' + table.id + '"], [data-search-for="' + table.id + '"]');
      controls.forEach(function (control) {
        control.addEventListener("input", function () { applyFilter(table); });
        control.addEventListener("change", function () { applyFilter(table); });
      });
    });
  }

  // the mode bar keeps what helps with these charts: zoom, pan, reset and saving a picture
  var PLOT_CONFIG = {
    displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "toggleSpikelines",
                             "hoverClosestCartesian", "hoverCompareCartesian"]
  };

  function drawCharts() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("div[data-spec]").forEach(function (element) {
      var spec = JSON.parse(document.getElementById(element.getAttribute("data-spec")).textContent);
      Plotly.newPlot(element, spec.data, spec.layout, PLOT_CONFIG);
    });
  }

  /* A run page: its step rows (as the store holds them) become the learning curve and the table of steps. */
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf"];

  function runData() {
    var source = document.getElementById("curve-data");
    return source ? JSON.parse(source.textContent) : null;
  }

  function metricNames(data) {
    var names = [];
    data.rows.forEach(function (row) {
      Object.keys(row[1]).forEach(function (name) { if (names.indexOf(name) === -1) names.push(name); });
    });
    return names;
  }

  function numberText(value) {
    if (typeof value !== "number") return value === null || value === undefined ? "-" : String(value);
    return Number.isInteger(value) ? String(value) : Math.abs(value) < 1e4 ? value.toFixed(4) : value.toPrecision(6);
  }

  function fillStepsTable(data) {
    var table = document.getElementById("steps-table");
    if (!table || !data) return;
    var names = metricNames(data);
    var head = table.tHead.insertRow();
    [data.unit].concat(names).forEach(function (name) {
      var th = document.createElement("th");
      th.scope = "col";
      th.setAttribute("data-type", "number");
      th.textContent = name;
      head.appendChild(th);
    });
    data.rows.forEach(function (row) {
      var tr = table.tBodies[0].insertRow();
      tr.insertCell().textContent = String(row[0]);
      names.forEach(function (name) { tr.insertCell().textContent = numberText(row[1][name]); });
    });
  }

  function drawRunCurve(data) {
    var element = document.getElementById("curve");
    if (!element || !data || typeof Plotly === "undefined") return;
    var names = metricNames(data);
    var losses = names.filter(function (name) { return name.indexOf("loss") !== -1; });
    var plotted = data.left.filter(function (name) { return names.indexOf(name) !== -1; }).concat(losses);
    var traces = plotted.map(function (name, index) {
      var points = data.rows.filter(function (row) { return typeof row[1][name] === "number"; });
      var loss = losses.indexOf(name) !== -1;
      return {
        type: "scatter", mode: "lines+markers", name: name, yaxis: loss ? "y2" : "y",
        x: points.map(function (row) { return row[0]; }), y: points.map(function (row) { return row[1][name]; }),
        line: { color: PALETTE[index % PALETTE.length], dash: loss ? "dash" : "solid" }, marker: { size: 5 },
        hovertemplate: name + " %{y:.4g} at " + data.unit + " %{x}<extra></extra>"
      };
    });
    var layout = data.layout;
    if (!traces.length) {
      layout.annotations = [{ text: "no " + data.unit + " was evaluated", showarrow: false, xref: "paper",
                              yref: "paper", x: 0.5, y: 0.5, font: { color: "#777" } }];
    }
    Plotly.newPlot(element, traces, layout, PLOT_CONFIG);
  }

  var run = runData();
  fillStepsTable(run);
  setUpTables();
  drawCharts();
  drawRunCurve(run);
})();
