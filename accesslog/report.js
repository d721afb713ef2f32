// The report page's only script (accesslog/report.py inlines it; the page's Content-Security-Policy
// allows it by its sha256 and nothing else). It adds to the page the server already rendered:
// sortable columns, a filter box and "show all rows" per table, and, when `accesslog serve` sent
// the page (body data-live), a poll of ./version that swaps in the new content when a run commits.
// It never builds markup from strings: values move as DOM text, so nothing from a log can run.
(function () {
  "use strict";
  var LIMIT = 10;                 // rows a table shows until "show all"
  var tables = {};                // report name -> {col, dir, filter, all}: kept across live updates

  function state(name) {
    return tables[name] || (tables[name] = { col: -1, dir: 0, filter: "", all: false });
  }

  function key(cell, numeric) {
    if (numeric) {
      var v = cell.getAttribute("data-v");
      return v === null || v === "" ? -Infinity : Number(v);
    }
    return cell.textContent.toLowerCase();
  }

  function apply(table) {
    var st = state(table.getAttribute("data-report"));
    var heads = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    if (st.col >= 0 && st.col < heads.length) {
      var numeric = heads[st.col].getAttribute("data-type") === "num";
      rows.sort(function (a, b) {
        var x = key(a.cells[st.col], numeric), y = key(b.cells[st.col], numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * st.dir || a.getAttribute("data-i") - b.getAttribute("data-i");
      });
      rows.forEach(function (row) { body.appendChild(row); });
    }
    for (var i = 0; i < heads.length; i++) {
      if (i === st.col) heads[i].setAttribute("aria-sort", st.dir > 0 ? "ascending" : "descending");
      else heads[i].removeAttribute("aria-sort");
    }
    var query = st.filter.trim().toLowerCase();
    var matching = 0, shown = 0;
    rows.forEach(function (row) {
      var match = !query || row.textContent.toLowerCase().indexOf(query) >= 0;
      if (match) matching++;
      row.hidden = !(match && (st.all || matching <= LIMIT));
      if (!row.hidden) shown++;
    });
    var tools = table.previousElementSibling;
    tools.querySelector(".count").textContent = shown + " of " + rows.length + " rows" +
      (query ? " (" + matching + " match)" : "");
    var more = tools.querySelector("button.more");
    more.hidden = matching <= LIMIT;
    more.textContent = st.all ? "Show the first " + LIMIT : "Show all " + matching;
  }

  function enhance(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table.data"), function (table) {
      var name = table.getAttribute("data-report");
      var st = state(name);
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        button.title = "Sort by " + th.textContent;
        button.textContent = th.textContent;
        th.textContent = "";
        th.appendChild(button);
        button.addEventListener("click", function () {
          var numeric = th.getAttribute("data-type") === "num";
          st.dir = st.col === i ? -st.dir : (numeric ? -1 : 1);   // numbers: largest first
          st.col = i;
          apply(table);
        });
      });
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.setAttribute("data-i", i); });
      var tools = document.createElement("div");
      tools.className = "tools";
      var input = document.createElement("input");
      input.type = "search";
      input.className = "filter";
      input.placeholder = "Filter rows";
      input.setAttribute("aria-label", "Filter the rows of " + name);
      input.value = st.filter;
      input.addEventListener("input", function () { st.filter = input.value; apply(table); });
      var count = document.createElement("span");
      count.className = "count";
      var more = document.createElement("button");
      more.type = "button";
      more.className = "more";
      more.addEventListener("click", function () { st.all = !st.all; apply(table); });
      tools.appendChild(input);
      tools.appendChild(count);
      tools.appendChild(more);
      table.parentNode.insertBefore(tools, table);
      apply(table);
    });
  }

  function live(body) {
    var every = Number(body.getAttribute("data-poll")) || 2000;
    var status = document.getElementById("live-status");
    function say(text) { if (status) status.textContent = text; }
    function swap(text) {
      var fresh = new DOMParser().parseFromString(text, "text/html");
      var content = fresh.getElementById("content");
      var current = document.getElementById("content");
      if (!content || !current) return;
      var open = {};
      Array.prototype.forEach.call(current.querySelectorAll("details[id]"), function (d) { open[d.id] = d.open; });
      var node = document.importNode(content, true);
      Array.prototype.forEach.call(node.querySelectorAll("details[id]"), function (d) {
        if (Object.prototype.hasOwnProperty.call(open, d.id)) d.open = open[d.id];
      });
      current.parentNode.replaceChild(node, current);
      body.setAttribute("data-version", fresh.body.getAttribute("data-version") || "");
      enhance(node);
      say("Updated " + new Date().toLocaleTimeString() + " with newly committed data.");
    }
    function poll() {
      fetch("version", { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (v) {
          if (v.version === body.getAttribute("data-version")) return null;
          return fetch(location.pathname + location.search, { cache: "no-store", credentials: "same-origin" })
            .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
            .then(swap);
        })
        .catch(function (e) { say("Live updates paused (" + e.message + "); retrying."); })
        .then(function () { setTimeout(poll, every); });
    }
    setTimeout(poll, every);
  }

  enhance(document);
  if (document.body.getAttribute("data-live")) live(document.body);
}());
