// quotalang pages: live numbers and the tree filter. Plain JavaScript, no dependencies.
// Everything works without it (the filter also submits to the server); with it, the
// numbers follow the ledger without a reload, updated in place so that focus and the
// open/closed state of the tree are kept.
(function () {
  "use strict";

  function text(el, value) { if (el && el.textContent !== String(value)) { el.textContent = value; } }

  // Segments of a bar, in order; the tree leaves out empty ones (its HTML must stay small).
  var SEGMENTS = ["o", "r", "c"];
  function setSegments(bar, classes, widths) {
    if (!bar) { return; }
    for (var i = 0; i < widths.length; i++) {
      var seg = bar.querySelector("i." + classes[i]);
      if (!seg && widths[i] > 0) {
        seg = document.createElement("i");
        seg.className = classes[i];
        var next = null;
        for (var j = i + 1; j < classes.length && !next; j++) { next = bar.querySelector("i." + classes[j]); }
        bar.insertBefore(seg, next);
      }
      if (seg) { seg.style.width = widths[i] + "%"; }
    }
  }
  function setWidths(row, widths) { setSegments(row.querySelector(".bar"), SEGMENTS, widths); }

  // The borrowing bar and numbers of a lending key on a group page's Borrowing table (issue 29).
  var LENDING = ["lend", "borrow", "guarantee", "within", "lent_out", "borrowed", "borrowed_from"];
  function setLending(holder, b) {
    var bar = holder.querySelector(".bar.lb");
    if (!bar || b.borrowed === undefined) { return; }
    setSegments(bar, ["o", "l", "b"], [b.within_pct, b.lent_pct, b.borrowed_pct]);
    if (bar.hasAttribute("aria-label")) {
      bar.setAttribute("aria-label", b.key + ": " + b.within + " held within its hard, " + b.lent_out +
                       " lent out, " + b.borrowed + " borrowed");
    }
    LENDING.forEach(function (f) {
      holder.querySelectorAll('[data-f="' + f + '"]').forEach(function (e) { text(e, b[f]); });
    });
  }

  // The tree's borrowing line, as the template draws it (macros.html tree_lending): only while the key is
  // lent out or borrowed, with only the segments and figures that are not 0. Rebuilt from the poll when it
  // says something else (with textContent only, so nothing from the server is parsed as HTML).
  function lendingSpan(b) {
    var span = el("span", "lend");
    var bar = el("span", "bar lb");
    bar.setAttribute("aria-hidden", "true");  // the numbers beside it say the same
    [["o", b.within_pct], ["l", b.lent_pct], ["b", b.borrowed_pct]].forEach(function (s) {
      if (s[1] > 0) { var seg = el("i", s[0]); seg.setAttribute("style", "width:" + s[1] + "%"); bar.appendChild(seg); }
    });
    span.appendChild(bar);
    var ln = el("span", "ln");
    [["within hard ", "within"], ["lent out ", "lent_out"], ["borrowed ", "borrowed"]].forEach(function (p) {
      if (b[p[1]] === "0") { return; }
      ln.appendChild(document.createTextNode((ln.firstChild ? " · " : "") + p[0]));
      ln.appendChild(el("b", null, b[p[1]]));
      if (p[1] === "borrowed") { ln.appendChild(document.createTextNode(" (from " + b.borrowed_from + ")")); }
    });
    span.appendChild(ln);
    return span;
  }
  function treeLending(row, b) {
    var shown = row.querySelector(":scope > .lend");
    var wanted = b.lent_or_borrowed ? lendingSpan(b) : null;
    if (shown && wanted && shown.isEqualNode(wanted)) { return; }
    if (shown) { shown.remove(); }
    if (wanted) { row.appendChild(wanted); }
  }

  function updateRow(row, data, fields) {
    fields.forEach(function (f) {
      if (data[f] === undefined) { return; }
      row.querySelectorAll('[data-f="' + f + '"]').forEach(function (el) { text(el, data[f]); });
    });
    row.classList.toggle("warn", !!data.warn);
    row.classList.toggle("over", !!data.over);
  }

  // Rows by "group\u0000key", indexed once: the tree page of 1,000 groups holds thousands of them.
  var index = null;
  function rows() {
    if (index === null) {
      index = {};
      // A group page marks each row with its group (data-g); the tree marks the group's box (data-bars).
      document.querySelectorAll("[data-g], [data-bars] > [data-k], [data-bars] > [data-cash]").forEach(function (el) {
        var g = el.dataset.g || el.parentNode.dataset.bars;
        var id = g + "\u0000" + (el.dataset.k || (el.dataset.cash ? "cash " + el.dataset.cash : el.dataset.f));
        (index[id] = index[id] || []).push(el);
      });
    }
    return index;
  }

  // The tree shows each group's fullest keys: when they change, that group's bars are rebuilt
  // (with textContent only, so nothing from the server is parsed as HTML).
  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (content !== undefined) { e.textContent = content; }
    return e;
  }

  function limitRow(name, b) {
    var row = el("div", "row");
    row.dataset.k = b.key;
    row.appendChild(el("span", "k", b.key));
    var bar = el("span", "bar");
    bar.setAttribute("aria-hidden", "true");
    SEGMENTS.forEach(function (c) { bar.appendChild(el("i", c)); });
    row.appendChild(bar);
    var n = el("span", "n");
    var used = el("b", null, b.used);
    used.dataset.f = "used";
    var hard = el("span", null, b.hard);
    hard.dataset.f = "hard";
    n.appendChild(used);
    n.appendChild(document.createTextNode("/"));
    n.appendChild(hard);
    if (b.subtree !== undefined) {
      var sub = el("span", "sub", " · subtree ");
      var total = el("span", null, b.subtree);
      total.dataset.f = "subtree";
      sub.appendChild(total);
      n.appendChild(sub);
    }
    row.appendChild(n);
    if (b.lent_or_borrowed) { row.appendChild(lendingSpan(b)); }
    return row;
  }

  function reshape(groups) {
    var changed = false;
    document.querySelectorAll("[data-bars]").forEach(function (box) {
      var g = groups[box.dataset.bars];
      if (!g) { return; }
      var shown = Array.prototype.map.call(box.querySelectorAll("[data-k]"), function (r) { return r.dataset.k; });
      var wanted = g.limits.map(function (b) { return b.key; });
      if (shown.join("\u0000") === wanted.join("\u0000")) { return; }
      box.querySelectorAll("[data-k]").forEach(function (r) { r.remove(); });
      var first = box.firstChild;
      g.limits.forEach(function (b) { box.insertBefore(limitRow(box.dataset.bars, b), first); });
      changed = true;
    });
    if (changed) { index = null; }
  }

  function apply(state, policy) {
    var groups = state.groups || {};
    reshape(groups);
    var all = rows();
    Object.keys(groups).forEach(function (name) {
      var g = groups[name];
      (g.limits || []).forEach(function (b) {
        (all[name + "\u0000" + b.key] || []).forEach(function (row) {
          setWidths(row, [b.own_pct, b.reserved_pct, b.carved_pct]);
          updateRow(row, b, ["hard", "carved", "used", "subtree", "reserved", "free"]);
          var bar = row.querySelector(".bar[aria-label]");
          if (bar && b.free !== undefined) { bar.setAttribute("aria-label", b.key + ": used " + b.used + " of " + b.hard + ", carved " + b.carved + ", free " + b.free); }
          if (row.parentNode.dataset.bars !== undefined) { treeLending(row, b); } else { setLending(row, b); }
        });
        (all[name + "\u0000lend " + b.key] || []).forEach(function (row) { setLending(row, b); });
      });
      (g.cash || []).forEach(function (c) {
        (all[name + "\u0000cash " + c.key] || []).forEach(function (row) {
          setWidths(row, [c.used_pct]);
          updateRow(row, c, ["used", "budget", "free", "burn", "runs_out"]);
        });
      });
      ["objects", "reservations"].forEach(function (f) {
        (all[name + "\u0000" + f] || []).forEach(function (el) { text(el, g[f]); });
      });
    });
    if (policy && state.policy !== policy) {
      text(document.getElementById("live"), "The policy was reloaded: reload the page to see its groups.");
    }
  }

  function poll(live) {
    var url = live.dataset.poll;
    var every = Math.max(1, Number(live.dataset.every) || 3) * 1000;
    var policy = null;
    function tick() {
      fetch(url, { headers: { accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (state) {
          if (policy === null) { policy = state.policy; }
          apply(state, policy);
          live.dataset.updated = String(Date.now());
          if (state.policy === policy) { text(live, "Live: updated " + new Date().toLocaleTimeString() + "."); }
        })
        .catch(function (e) { text(live, "Live updates paused (" + e.message + "); retrying."); })
        .then(function () { window.setTimeout(tick, every); });
    }
    window.setTimeout(tick, every);
  }

  function filter(input) {
    var tree = document.getElementById("tree");
    var status = document.getElementById("matches");
    if (!tree) { return; }
    var items = Array.prototype.slice.call(tree.querySelectorAll("li.group"));
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      var shown = 0;
      // Deepest first: a group is shown if it matches or a descendant is shown.
      for (var i = items.length - 1; i >= 0; i--) {
        var li = items[i];
        var hit = !q || li.dataset.name.toLowerCase().indexOf(q) >= 0;
        var kids = li.querySelector(":scope > details > ul");
        var below = kids && kids.querySelector(":scope > li.group:not([hidden])");
        li.hidden = !(hit || below);
        if (!li.hidden) { shown++; if (q && below) { li.querySelector(":scope > details").open = true; } }
      }
      text(status, q ? shown + " shown" : "");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live && live.dataset.poll) { poll(live); }
    var input = document.getElementById("filter");
    if (input) { filter(input); }
  });
})();
