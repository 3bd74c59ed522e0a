/* stence-bench leaderboard: sort a table by clicking a column header (no framework, no network).
   A header button names its column (data-col) and the order of its first click (data-order: "desc" for
   higher-is-better metrics). Cells sort by data-v (a number, or text for data-type="text"); cells without
   a value (missing, failed) always sort last. */
(function () {
  "use strict";

  function key(row, col, type) {
    var cell = row.children[col];
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    if (type === "text") { return (v !== null ? v : cell.textContent).trim().toLowerCase(); }
    if (v === null || v === "") { return null; }
    var n = parseFloat(v);
    return isNaN(n) ? null : n;
  }

  function sortBy(table, button) {
    var col = parseInt(button.getAttribute("data-col"), 10);
    var type = button.getAttribute("data-type") || "num";
    var first = button.getAttribute("data-order") === "desc" ? "descending" : "ascending";
    var other = first === "ascending" ? "descending" : "ascending";
    var th = button.parentNode;
    var dir = th.getAttribute("aria-sort") === first ? other : first;
    var headers = table.querySelectorAll("thead th[aria-sort]");
    for (var h = 0; h < headers.length; h++) { headers[h].setAttribute("aria-sort", "none"); }
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var order = rows.map(function (row, i) { return { row: row, i: i, k: key(row, col, type) }; });
    order.sort(function (a, b) {
      if (a.k === null || b.k === null) {
        return a.k === null && b.k === null ? a.i - b.i : (a.k === null ? 1 : -1);
      }
      var c = a.k < b.k ? -1 : (a.k > b.k ? 1 : 0);
      return (dir === "descending" ? -c : c) || a.i - b.i;
    });
    for (var r = 0; r < order.length; r++) { body.appendChild(order[r].row); }
    var status = table.parentNode.querySelector(".sort-status");
    if (status) { status.textContent = "Sorted by " + button.textContent.trim() + ", " + dir + "."; }
  }

  var tables = document.querySelectorAll("table.sortable");
  for (var t = 0; t < tables.length; t++) {
    (function (table) {
      var buttons = table.querySelectorAll("thead button[data-col]");
      for (var b = 0; b < buttons.length; b++) {
        buttons[b].addEventListener("click", function (event) { sortBy(table, event.currentTarget); });
      }
    })(tables[t]);
  }
})();
