(function () {
  "use strict";
  var table = document.getElementById("tasks");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  headers.forEach(function (th, column) {
    var button = th.querySelector("button");
    button.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = th.getAttribute("data-type") === "num";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-value") || "";
        var y = b.cells[column].getAttribute("data-value") || "";
        var order = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  var text = document.getElementById("filter");
  var status = document.getElementById("status-filter");
  var shown = document.getElementById("shown");
  function filter() {
    var query = text.value.trim().toLowerCase();
    var wanted = status.value;
    var count = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var match = (!wanted || row.getAttribute("data-status") === wanted) &&
        (!query || row.textContent.toLowerCase().indexOf(query) >= 0);
      row.hidden = !match;
      count += match ? 1 : 0;
    });
    shown.textContent = count + " of " + body.rows.length + " tasks";
  }
  text.addEventListener("input", filter);
  status.addEventListener("change", filter);
  filter();
}());
