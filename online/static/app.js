// SeqRank web demo: upload through the JSON API (POST /api/rank) and show the results in place.
// Without JavaScript the form posts to "/" and the server renders the same page.
(function () {
  "use strict";

  const form = document.getElementById("upload-form");
  const input = document.getElementById("file-input");
  const button = document.getElementById("rank-button");
  const busy = document.getElementById("busy");
  const errorBox = document.getElementById("error");
  const results = document.getElementById("results");
  const summary = document.getElementById("summary");
  const tableBody = document.querySelector("#ranking-table tbody");
  const maxBytes = Number(form.dataset.maxBytes);
  let previewUrl = null;

  function setBusy(on) {
    button.disabled = on;
    input.disabled = on;
    busy.hidden = !on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  function formatNumber(value, digits) {
    return value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function renderTable(objects) {
    const rows = objects.map(function (obj) {
      const tr = document.createElement("tr");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = obj.color;
      const colour = document.createElement("td");
      colour.appendChild(swatch);
      tr.append(
        cell(String(obj.rank)),
        colour,
        cell(formatNumber(obj.objectness, 4)),
        cell(formatNumber(obj.saliency, 4)),
        cell(obj.bbox.map(function (v) { return formatNumber(v, 0); }).join(", "))
      );
      return tr;
    });
    tableBody.replaceChildren.apply(tableBody, rows);
  }

  function showResults(data, file) {
    if (previewUrl) {
      URL.revokeObjectURL(previewUrl);
    }
    previewUrl = URL.createObjectURL(file);
    document.getElementById("input-image").src = previewUrl;
    document.getElementById("colormap-image").src =
      "data:image/png;base64," + data.colormap_png_base64;
    document.getElementById("overlay-image").src =
      "data:image/png;base64," + data.overlay_png_base64;
    const count = data.objects.length;
    summary.textContent = count
      ? count + " ranked object(s), image " + data.image.width + " \u00d7 " +
        data.image.height + " px"
      : "No salient object found.";
    renderTable(data.objects);
    results.hidden = false;
  }

  async function rank(file) {
    const body = new FormData();
    body.append("file", file);
    const response = await fetch(form.dataset.api, { method: "POST", body: body });
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok || data === null) {
      const reason = data && data.error ? data.error : "HTTP " + response.status;
      throw new Error(reason);
    }
    return data;
  }

  document.querySelectorAll(".figures figure").forEach(function (figure) {
    figure.addEventListener("click", function () {
      figure.classList.toggle("enlarged");
    });
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const file = input.files[0];
    if (!file) {
      showError("Choose an image first.");
      return;
    }
    if (file.size > maxBytes) {
      const mb = function (n) { return (n / 1048576).toFixed(1); };
      showError("The file is " + mb(file.size) + " MB; the limit is " + mb(maxBytes) + " MB.");
      return;
    }
    showError("");
    setBusy(true);
    try {
      showResults(await rank(file), file);
    } catch (err) {
      showError("Ranking failed: " + err.message);
    } finally {
      setBusy(false);
    }
  });
})();
