// alertmail: refresh the overview's sections from the JSON API without reloading the page.
// Values go in with textContent only (never as HTML): alert labels are untrusted.
"use strict";

(function () {
  var main = document.querySelector("main[data-refresh]");
  if (!main || !window.fetch) return;
  var url = main.getAttribute("data-refresh");
  var every = Math.max(2, parseInt(main.getAttribute("data-every") || "10", 10)) * 1000;
  var note = document.querySelector("[data-refresh-note]");
  var timer = null;

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
  }

  function text(v) { return v == null ? "" : String(v); }

  function fill(root, item) {
    root.querySelectorAll("[data-field]").forEach(function (el) {
      el.textContent = text(item[el.getAttribute("data-field")]);
    });
    root.querySelectorAll("[data-href]").forEach(function (el) {
      var href = text(item[el.getAttribute("data-href")]);
      if (href.charAt(0) === "/" && href.charAt(1) !== "/") el.setAttribute("href", href);
    });
    root.querySelectorAll("[data-title]").forEach(function (el) {
      el.setAttribute("title", text(item[el.getAttribute("data-title")]));
    });
    root.querySelectorAll("[data-class]").forEach(function (el) {
      var prefix = el.getAttribute("data-class") + "-";
      Array.prototype.slice.call(el.classList).forEach(function (c) {
        if (c.indexOf(prefix) === 0) el.classList.remove(c);
      });
      var value = text(item[el.getAttribute("data-field")]).replace(/[^A-Za-z0-9_-]/g, "");
      if (value) el.classList.add(prefix + value);
    });
  }

  function render(data) {
    document.querySelectorAll("[data-bind]").forEach(function (el) {
      el.textContent = text(get(data, el.getAttribute("data-bind")));
    });
    document.querySelectorAll("tbody[data-rows]").forEach(function (body) {
      var items = get(data, body.getAttribute("data-rows")) || [];
      var tpl = document.getElementById(body.getAttribute("data-template"));
      if (!tpl) return;
      var frag = document.createDocumentFragment();
      if (!items.length) {
        var tr = document.createElement("tr");
        var td = document.createElement("td");
        tr.className = "empty";
        td.colSpan = parseInt(body.getAttribute("data-cols") || "1", 10);
        td.textContent = body.getAttribute("data-empty") || "";
        tr.appendChild(td);
        frag.appendChild(tr);
      }
      items.forEach(function (item) {
        var row = tpl.content.cloneNode(true);
        fill(row, item);
        frag.appendChild(row);
      });
      body.replaceChildren(frag);
    });
  }

  function status(message, stale) {
    if (!note) return;
    note.textContent = message;
    note.classList.toggle("stale", !!stale);
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (resp.status === 401) throw new Error("signed out: reload the page to sign in");
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (data) { render(data); status("· live, every " + every / 1000 + " s", false); })
      .catch(function (err) { status("· not updating (" + err.message + ")", true); })
      .then(schedule);
  }

  function schedule() {
    clearTimeout(timer);
    if (!document.hidden) timer = setTimeout(refresh, every);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) clearTimeout(timer); else refresh();
  });
  status("· live, every " + every / 1000 + " s", false);
  schedule();
})();
