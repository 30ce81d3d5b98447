// The dashboard's few behaviours beyond htmx: "select all", and ticks that survive a row's
// live update (the row is replaced whole, its checkbox with it).
(function () {
  "use strict";
  var ticked = new Set();
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.id === "select-all") {
      document.querySelectorAll('input[name="id"][form="bulk"]').forEach(function (box) {
        box.checked = t.checked;
        if (t.checked) { ticked.add(box.value); } else { ticked.delete(box.value); }
      });
    } else if (t.name === "id" && t.getAttribute("form") === "bulk") {
      if (t.checked) { ticked.add(t.value); } else { ticked.delete(t.value); }
    }
  });
  document.addEventListener("htmx:load", function (e) {
    var box = e.target.querySelector && e.target.querySelector('input[name="id"][form="bulk"]');
    if (box && ticked.has(box.value)) { box.checked = true; }
  });
})();
