// FakeScope page script: upload with progress, polling, and the time-on-page beacon.
// No framework and nothing loaded from elsewhere (the pages' CSP allows 'self' only).
"use strict";

(function () {
  // --- time on page: visible seconds, reported on hide/leave (largest report wins) ---------
  const viewId = document.body.dataset.viewId;
  let visibleMs = 0;
  let shownAt = document.visibilityState === "visible" ? performance.now() : null;
  function visibleSeconds() {
    const running = shownAt === null ? 0 : performance.now() - shownAt;
    return (visibleMs + running) / 1000;
  }
  function sendBeacon() {
    if (!viewId) return;
    const body = JSON.stringify({ view_id: viewId, seconds: visibleSeconds() });
    if (!(navigator.sendBeacon && navigator.sendBeacon("/api/v1/beacon", body))) {
      fetch("/api/v1/beacon", { method: "POST", body: body, keepalive: true });
    }
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      if (shownAt !== null) { visibleMs += performance.now() - shownAt; shownAt = null; }
      sendBeacon();
    } else if (shownAt === null) {
      shownAt = performance.now();
    }
  });
  window.addEventListener("pagehide", sendBeacon);

  // --- upload page ------------------------------------------------------------------------
  const form = document.getElementById("upload-form");
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  const box = document.getElementById("progress-box");
  const bar = document.getElementById("progress-bar");
  const statusEl = document.getElementById("status");
  const errorEl = document.getElementById("error");

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
    if (box) box.hidden = true;
  }

  function poll(jobId) {
    fetch("/api/v1/jobs/" + jobId, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
      .then(function ([code, job]) {
        if (code !== 200) { showError((job.error && job.error.message) || "Lost the job."); return; }
        if (job.status === "done" || job.status === "failed") {
          window.location.assign("/jobs/" + jobId);
          return;
        }
        if (statusEl) {
          statusEl.textContent = job.status === "running"
            ? "Looking at the faces…" : "Waiting for the analysis to start…";
        }
        setTimeout(function () { poll(jobId); }, 700);
      })
      .catch(function () { setTimeout(function () { poll(jobId); }, 2000); });
  }

  function upload(file) {
    errorEl.hidden = true;
    const max = Number(form.dataset.maxBytes);
    if (file.size > max) {
      showError("This file is " + Math.round(file.size / 1048576) + " MB; the limit is " +
                Math.round(max / 1048576) + " MB.");
      return;
    }
    const data = new FormData();
    data.append("file", file, file.name);
    data.append("keep_video", document.getElementById("keep_video").checked ? "true" : "false");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/jobs");
    box.hidden = false;
    bar.style.width = "0%";
    statusEl.textContent = "Uploading " + file.name + "…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) bar.style.width = Math.round(100 * e.loaded / e.total) + "%";
    });
    xhr.addEventListener("load", function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status !== 202) {
        showError((body.error && body.error.message) || ("Upload failed (HTTP " + xhr.status + ")."));
        return;
      }
      bar.style.width = "100%";
      statusEl.textContent = "Uploaded. Analysing…";
      poll(body.id);
    });
    xhr.addEventListener("error", function () { showError("The upload was interrupted."); });
    xhr.send(data);
  }

  if (form && drop && input) {
    drop.addEventListener("click", function (e) { if (e.target !== input) input.click(); });
    drop.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
    });
    input.addEventListener("change", function () { if (input.files.length) upload(input.files[0]); });
    ["dragenter", "dragover"].forEach(function (type) {
      drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) upload(files[0]);
    });
  }

  // --- result page: "Where the classifier looked" (a face's heatmap, fetched when asked) ----
  function dataUrl(blob) {  // the page's CSP allows images from 'self' and data: only
    return new Promise(function (resolve, reject) {
      const reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(new Error("Could not read the heatmap.")); };
      reader.readAsDataURL(blob);
    });
  }
  document.querySelectorAll(".heatmap-toggle").forEach(function (button) {
    const item = button.closest("li");
    const img = item.querySelector("img");
    const note = item.querySelector(".heatmap-status");
    const thumbnail = { src: img.src, alt: img.alt };
    let heatmap = null;
    function show(on) {
      img.src = on ? heatmap : thumbnail.src;
      img.alt = on ? "where the classifier looked, " + thumbnail.alt : thumbnail.alt;
      img.classList.toggle("heatmap", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
    }
    button.addEventListener("click", function () {
      if (button.getAttribute("aria-pressed") === "true") { show(false); return; }
      if (heatmap) { show(true); return; }
      button.disabled = true;
      note.textContent = "Computing…";
      fetch(button.dataset.heatmap, { credentials: "same-origin" })
        .then(function (r) {
          if (r.ok) return r.blob();
          return r.json().catch(function () { return {}; }).then(function (body) {
            throw new Error((body.error && body.error.message) || ("HTTP " + r.status));
          });
        })
        .then(dataUrl)
        .then(function (url) { heatmap = url; note.textContent = ""; show(true); })
        .catch(function (e) { note.textContent = e.message; })
        .finally(function () { button.disabled = false; });
    });
  });

  // --- result page still in progress: poll, then reload --------------------------------------
  const result = document.getElementById("result");
  if (result && (result.dataset.status === "pending" || result.dataset.status === "running")) {
    const id = result.dataset.jobId;
    (function again() {
      fetch("/api/v1/jobs/" + id).then(function (r) { return r.json(); }).then(function (job) {
        if (job.status === "done" || job.status === "failed") window.location.reload();
        else setTimeout(again, 1000);
      }).catch(function () { setTimeout(again, 2000); });
    })();
  }
})();
