// Say "too large" before sending a file the server would refuse (the server checks anyway).
(function () {
  "use strict";
  var form = document.getElementById("form-carga");
  if (!form) return;
  var input = document.getElementById("hoja");
  var message = document.getElementById("hoja-grande");
  var limit = Number(form.dataset.limit);
  function check() {
    var big = input.files.length > 0 && input.files[0].size > limit;
    message.hidden = !big;
    input.setAttribute("aria-invalid", big ? "true" : "false");
    return !big;
  }
  input.addEventListener("change", check);
  form.addEventListener("submit", function (e) { if (!check()) { e.preventDefault(); input.focus(); } });
})();
