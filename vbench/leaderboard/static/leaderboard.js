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

  /* Per table: its rows in the order shown (with what the filter reads, cached) and how many to show. A big
   * table (the page of all runs) shows its first rows only until "show all": a browser takes seconds to lay
   * out 10,000 rows, at every sort. */
  var tables = new WeakMap();

  function stateOf(table) {
    if (!tables.has(table)) {
      var shown = parseInt(table.getAttribute("data-shown"), 10);
      tables.set(table, {
        limit: isNaN(shown) ? Infinity : shown,
        rows: Array.prototype.map.call(table.tBodies[0].rows, function (row, position) {
          return { row: row, position: position, facet: row.getAttribute("data-facet"), text: null };
        })
      });
    }
    return tables.get(table);
  }

  /* Sort the rows by the clicked column: ascending first, then descending; cells without a value last. */
  function sortBy(table, header) {
    var headers = Array.prototype.slice.call(header.parentNode.children);
    var index = headers.indexOf(header);
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var state = stateOf(table);
    var keyed = state.rows.map(function (item) {
      return { item: item, key: sortKey(item.row.cells[index], numeric) };
    });
    keyed.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        return (a.key === null) - (b.key === null) || a.item.position - b.item.position;
      }
      var order = numeric ? a.key - b.key : a.key.localeCompare(b.key);
      return (ascending ? order : -order) || a.item.position - b.item.position;
    });
    state.rows = keyed.map(function (entry) { return entry.item; });
    var body = table.tBodies[0];
    table.removeChild(body);  // rows move fast in a detached body, and the table is laid out once
    state.rows.forEach(function (item) { body.appendChild(item.row); });
    table.appendChild(body);
    applyFilter(table);
  }

  /* Show the rows whose facet (family, status) is the selected one and whose text holds every search word
   * (the first ones of them, in a big table, until "show all"). */
  function applyFilter(table) {
    var state = stateOf(table);
    var facet = document.querySelector('[data-facet-for="' + table.id + '"]');
    var search = document.querySelector('[data-search-for="' + table.id + '"]');
    var count = document.querySelector('[data-count-for="' + table.id + '"]');
    var showAll = document.querySelector('[data-show-all-for="' + table.id + '"]');
    var wanted = facet ? facet.value : "";
    var words = search ? search.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    var matching = 0;
    state.rows.forEach(function (item) {
      if (words.length && item.text === null) item.text = item.row.textContent.toLowerCase();
      var match = (!wanted || item.facet === wanted) &&
        words.every(function (word) { return item.text.indexOf(word) !== -1; });
      if (match) matching++;
      var visible = match && matching <= state.limit;
      if (item.row.hidden === visible) item.row.hidden = !visible;
    });
    var total = state.rows.length;
    var text = matching === total ? total + " rows" : matching + " of " + total + " rows";
    if (matching > state.limit) {
      var of = matching === total ? text : matching + " matching rows (" + total + " in all)";
      text = "the first " + state.limit + " of " + of;
    }
    if (count) count.textContent = text;
    if (showAll) showAll.hidden = matching <= state.limit;
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
      var facet = document.querySelector('[data-facet-for="' + table.id + '"]');
      if (facet) facet.addEventListener("change", function () { applyFilter(table); });
      var search = document.querySelector('[data-search-for="' + table.id + '"]');
      var pending = null;
      if (search) {
        search.addEventListener("input", function () {  // once typing pauses, not at every key
          clearTimeout(pending);
          pending = setTimeout(function () { applyFilter(table); }, 120);
        });
      }
      var showAll = document.querySelector('[data-show-all-for="' + table.id + '"]');
      if (showAll) {
        showAll.addEventListener("click", function () {
          stateOf(table).limit = Infinity;
          applyFilter(table);
        });
      }
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
