// Live progress of a batch: poll a small JSON endpoint every second; swap the table body in
// when more checks finish; reload once the batch is done (downloads appear).
(function () {
  "use strict";
  var box = document.getElementById("avance");
  if (!box) return;
  var id = box.dataset.batch;
  var done = Number(box.dataset.done);
  var lastTable = 0;
  var labels = { queued: "En cola", running: "En proceso", done: "Terminado" };

  function refreshTable() {
    lastTable = Date.now();
    fetch("/lotes/" + id + "/tabla", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) document.getElementById("filas").innerHTML = html; })
      .catch(function () {});
  }

  function tick() {
    fetch("/lotes/" + id + "/estado", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.redirected) { location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (s) {
        if (!s) return;
        if (s.state === "done") { location.reload(); return; }
        var text = document.getElementById("estado-texto");
        text.textContent = labels[s.state] || s.state;
        text.className = "state state-" + s.state;
        document.getElementById("estado-cuenta").textContent = s.done + " de " + s.total + " consultas terminadas";
        var waiting = document.getElementById("estado-espera");
        if (waiting) {
          waiting.hidden = !s.waiting;
          document.getElementById("estado-espera-cuenta").textContent = s.waiting || 0;
        }
        var captchas = document.getElementById("aviso-captchas");
        if (captchas) {
          captchas.hidden = !s.captchas;
          document.getElementById("aviso-captchas-texto").textContent = s.captchas_text;
        }
        Object.keys(s.progress).forEach(function (portal) {
          var bar = document.getElementById("progreso-" + portal);
          var count = document.getElementById("cuenta-" + portal);
          if (bar) { bar.max = s.progress[portal].total; bar.value = s.progress[portal].done; bar.textContent = s.progress[portal].done + " de " + s.progress[portal].total; }
          if (count) count.textContent = s.progress[portal].done + " de " + s.progress[portal].total;
        });
        // Big batches: the table (about 350 bytes per row) is refreshed less often.
        var gap = s.total > 300 ? Math.min(30000, Math.max(5000, s.total * 5)) : 0;
        if (s.done !== done && Date.now() - lastTable >= gap) { done = s.done; refreshTable(); }
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, 1000); });
  }
  setTimeout(tick, 1000);
})();
