// genlab serve: the pages' behaviour. Plain JS, no libraries, no network beyond this server.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

function showError(message) {
  const el = $("#error");
  if (!el) { alert(message); return; }
  el.textContent = message || "";
  el.hidden = !message;
}

async function jsonOrError(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || ("HTTP " + response.status));
  return body;
}

async function postForm(url, form) {
  const response = await fetch(url, { method: "POST", body: form });
  if (!response.ok) await jsonOrError(response);
  return response;
}

async function imageInto(img, response) {
  const blob = await response.blob();
  if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
  img.dataset.url = URL.createObjectURL(blob);
  img.src = img.dataset.url;
  img.hidden = false;
}

// ------------------------------------------------------------------ runs page
function initRuns() {
  const table = $("#runs-table");
  const button = $("#compare-button");
  const update = () => {
    const chosen = $$(".run-select:checked").map((c) => c.value);
    button.disabled = chosen.length < 1;
  };
  $$(".run-select").forEach((c) => c.addEventListener("change", update));
  button.addEventListener("click", () => {
    const chosen = $$(".run-select:checked").map((c) => "runs=" + encodeURIComponent(c.value));
    if (chosen.length) window.location = "/compare?" + chosen.join("&");
  });
  $$("th[data-sort]", table).forEach((th) => {
    th.addEventListener("click", () => {
      const key = th.dataset.sort, numeric = th.dataset.type === "num";
      const dir = th.dataset.dir === "asc" ? "desc" : "asc";
      $$("th[data-sort]", table).forEach((h) => delete h.dataset.dir);
      th.dataset.dir = dir;
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const value = (row) => {
        const cell = row.querySelector(`td[data-key="${key}"]`);
        const v = cell ? cell.dataset.value : "";
        if (!numeric) return v.toLowerCase();
        return v === "" ? null : parseFloat(v);
      };
      rows.sort((a, b) => {
        const va = value(a), vb = value(b);
        if (va === vb) return 0;
        if (va === null) return 1;
        if (vb === null) return -1;
        return (va < vb ? -1 : 1) * (dir === "asc" ? 1 : -1);
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
  update();
}

// ------------------------------------------------------------------ run page
function initRun() {
  const name = $("#run-name").dataset.run;
  const button = $("#evaluate-button");
  const status = $("#evaluate-status");
  button.addEventListener("click", async () => {
    showError("");
    button.disabled = true;
    status.textContent = "queued…";
    try {
      const n = parseInt($("#eval-n").value || "1000", 10);
      const job = await jsonOrError(await fetch(`/api/runs/${encodeURIComponent(name)}/evaluate`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ n }),
      }));
      const source = new EventSource(`/api/jobs/${job.id}/events`);
      source.onmessage = (ev) => {
        const state = JSON.parse(ev.data);
        status.textContent = state.status + (state.message ? ": " + state.message : "");
        if (state.status === "done") { source.close(); window.location.reload(); }
        if (state.status === "failed" || state.status === "cancelled") { source.close(); showError(state.message); button.disabled = false; }
      };
      source.onerror = () => { source.close(); button.disabled = false; };
    } catch (e) { showError(e.message); button.disabled = false; status.textContent = ""; }
  });
}

// ------------------------------------------------------------------ generate page
function initGenerate() {
  const form = $("#generate-form");
  const run = form.dataset.run;
  const info = JSON.parse($("#model-info").textContent);
  const guidance = $("#guidance");
  if (guidance) {
    const show = () => { $("#guidance-value").textContent = guidance.value; };
    guidance.addEventListener("input", show);
    show();
  }
  const fields = ["n", "seed", "label", "prompt"].concat(Object.keys(info.sample_options));
  const collect = () => {
    const body = {};
    for (const key of fields) {
      const el = document.getElementById(key);
      if (!el) continue;
      if (el.type === "checkbox") { if (el.checked) body[key] = true; continue; }
      if (el.value === "") continue;
      body[key] = el.type === "number" || el.type === "range" ? Number(el.value) : el.value;
    }
    return body;
  };
  $("#generate-button").addEventListener("click", async () => {
    showError("");
    const out = $("#generated");
    out.innerHTML = "";
    $("#download-png").hidden = true;
    $("#download-npy").hidden = true;
    const status = $("#generate-status");
    status.textContent = "generating…";
    const button = $("#generate-button");
    button.disabled = true;
    const started = performance.now();
    try {
      const response = await fetch(`/api/runs/${encodeURIComponent(run)}/generate`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(collect()),
      });
      if (!response.ok) await jsonOrError(response);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (value) buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (msg.error) throw new Error(msg.error);
          if (msg.tile) {
            const img = document.createElement("img");
            img.className = "generated-tile";
            img.src = msg.tile;
            img.alt = `images ${msg.first + 1}-${msg.first + msg.count}`;
            out.appendChild(img);
            status.textContent = `${msg.first + msg.count} images (${((performance.now() - started) / 1000).toFixed(1)} s)`;
          }
          if (msg.done) {
            const grid = document.createElement("img");
            grid.id = "generated-grid";
            grid.src = `/api/generations/${msg.id}.png`;
            grid.alt = "generated grid";
            $$(".generated-tile", out).forEach((t) => { t.hidden = true; });
            out.appendChild(grid);
            const png = $("#download-png"), npy = $("#download-npy");
            png.href = `/api/generations/${msg.id}.png`; png.hidden = false;
            npy.href = `/api/generations/${msg.id}.npy`; npy.hidden = false;
            status.textContent = `${msg.n} images in ${((performance.now() - started) / 1000).toFixed(1)} s (seed ${msg.params.seed})`;
          }
        }
        if (done) break;
      }
    } catch (e) { showError(e.message); status.textContent = ""; }
    button.disabled = false;
  });
  $("#load-png").addEventListener("change", async (ev) => {
    showError("");
    const file = ev.target.files[0];
    if (!file) return;
    const data = new FormData();
    data.append("png", file);
    try {
      const params = await jsonOrError(await fetch("/api/png-params", { method: "POST", body: data }));
      for (const [key, value] of Object.entries(params)) {
        const el = document.getElementById(key);
        if (!el || key === "run" || key === "model") continue;
        if (el.type === "checkbox") el.checked = !!value; else el.value = value;
      }
      if (guidance) $("#guidance-value").textContent = guidance.value;
      $("#generate-status").textContent = `parameters loaded from ${file.name}` + (params.run && params.run !== run ? ` (made by run ${params.run})` : "");
    } catch (e) { showError(e.message); }
  });
}

// ------------------------------------------------------------------ edit page
function initEdit() {
  const run = $("#edit-root").dataset.run;
  const base = `/api/runs/${encodeURIComponent(run)}`;
  const prompt = () => ($("#edit-prompt") ? $("#edit-prompt").value : "");
  const preview = (input, img) => {
    if (!input || !img) return;
    const load = async () => {
      try {
        const response = await fetch(`${base}/dataset-image?index=${encodeURIComponent(input.value || 0)}`);
        if (!response.ok) await jsonOrError(response);
        const label = response.headers.get("X-Genlab-Label");
        img.title = label === null ? "" : `label ${label}`;
        img.dataset.label = label === null ? "" : label;
        await imageInto(img, response);
      } catch (e) { showError(e.message); }
    };
    input.addEventListener("change", load);
    load();
  };
  preview($("#index-a"), $("#image-a"));
  preview($("#index-b"), $("#image-b"));
  preview($("#source-index"), $("#inpaint-source"));
  const strength = $("#strength");
  if (strength) strength.addEventListener("input", () => { $("#strength-value").textContent = strength.value; });

  const run_action = async (action, form, img, button) => {
    showError("");
    button.disabled = true;
    try {
      if (prompt()) form.append("prompt", prompt());
      await imageInto(img, await postForm(`${base}/edit/${action}`, form));
    } catch (e) { showError(e.message); }
    button.disabled = false;
  };
  if ($("#interpolate-button")) {
    $("#interpolate-button").addEventListener("click", () => {
      const form = new FormData();
      form.append("index_a", $("#index-a").value);
      form.append("index_b", $("#index-b").value);
      form.append("frames", $("#frames").value);
      if ($("#upload-a").files[0]) form.append("upload_a", $("#upload-a").files[0]);
      if ($("#upload-b").files[0]) form.append("upload_b", $("#upload-b").files[0]);
      run_action("interpolate", form, $("#interpolate-result"), $("#interpolate-button"));
    });
  }
  const canvas = $("#mask-canvas");
  if (canvas) {
    const ctx = canvas.getContext("2d");
    let painting = false;
    const paint = (ev) => {
      if (!painting) return;
      const rect = canvas.getBoundingClientRect();
      const x = (ev.clientX - rect.left) * (canvas.width / rect.width);
      const y = (ev.clientY - rect.top) * (canvas.height / rect.height);
      const r = parseFloat($("#brush-size").value) / 2;
      ctx.fillStyle = "rgba(255, 255, 255, 1)";
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
    };
    canvas.addEventListener("mousedown", (ev) => { painting = true; paint(ev); });
    canvas.addEventListener("mousemove", paint);
    window.addEventListener("mouseup", () => { painting = false; });
    $("#mask-clear").addEventListener("click", () => ctx.clearRect(0, 0, canvas.width, canvas.height));
    $("#inpaint-button").addEventListener("click", () => {
      canvas.toBlob((blob) => {
        const form = new FormData();
        form.append("index", $("#source-index").value);
        form.append("mask", blob, "mask.png");
        run_action("inpaint", form, $("#inpaint-result"), $("#inpaint-button"));
      }, "image/png");
    });
  }
  if ($("#edit-button")) {
    $("#edit-button").addEventListener("click", () => {
      const form = new FormData();
      form.append("index", $("#source-index").value);
      form.append("strength", $("#strength").value);
      run_action("sdedit", form, $("#edit-result"), $("#edit-button"));
    });
  }
  if ($("#attribute-button")) {
    $("#attribute-button").addEventListener("click", () => {
      const form = new FormData();
      form.append("attribute", $("#attribute").value);
      form.append("scale", $("#attribute-scale").value);
      form.append("index", $("#attribute-index").value);
      run_action("attribute", form, $("#attribute-result"), $("#attribute-button"));
    });
  }
}

// ------------------------------------------------------------------ train page
function initTrain() {
  const models = JSON.parse($("#models-json").textContent);
  const modelSelect = $("#model");
  const FORM_FIELDS = new Set(["condition", "preset", "max_steps", "epochs", "checkpoint_dir", "checkpoint_every", "sample_every", "device"]);
  const buildParams = () => {
    const m = models[modelSelect.value];
    $("#model-doc").textContent = m.doc + " (likelihood: " + m.likelihood + ")";
    const cond = $("#condition");
    cond.innerHTML = "";
    for (const c of m.conditionings) {
      const o = document.createElement("option"); o.value = c; o.textContent = c; cond.appendChild(o);
    }
    const neural = "max_steps" in m.parameters;
    $("#preset").disabled = !neural;
    $("#max-steps").disabled = !neural;
    const fs = $("#params");
    fs.innerHTML = "<legend>Parameters</legend>";
    for (const [name, p] of Object.entries(m.parameters)) {
      if (FORM_FIELDS.has(name) || p.kind === "array" || p.kind === "path") continue;
      const label = document.createElement("label");
      label.title = p.help || "";
      label.append(name + " ");
      let input;
      if (p.kind === "choice" || p.kind === "bool") {
        input = document.createElement("select");
        const choices = p.kind === "bool" ? ["true", "false"] : p.choices;
        const empty = document.createElement("option"); empty.value = ""; empty.textContent = `default (${p.default})`;
        input.appendChild(empty);
        for (const c of choices) { const o = document.createElement("option"); o.value = String(c); o.textContent = String(c); input.appendChild(o); }
      } else {
        input = document.createElement("input");
        input.type = "text";
        input.placeholder = p.default === null ? "default" : String(p.default);
      }
      input.name = "param-" + name;
      input.id = "param-" + name;
      label.appendChild(input);
      fs.appendChild(label);
    }
  };
  modelSelect.addEventListener("change", buildParams);
  buildParams();
  // typing a path or choosing a file selects that kind of data
  $("#data-path").addEventListener("input", () => { if ($("#data-path").value) $("#data").value = "path"; });
  $("#data-upload").addEventListener("change", () => { if ($("#data-upload").files[0]) $("#data").value = "upload"; });

  let current = null, source = null;
  const render = (state) => {
    $("#job-id").textContent = state.id ? `${state.id} (${state.run})` : "";
    $("#job-status").textContent = state.status;
    $("#job-step").textContent = String(state.step || 0);
    $("#job-message").textContent = state.message || "";
    if (state.loss_svg !== undefined) $("#job-loss").innerHTML = state.loss_svg;
    if (state.preview) { $("#job-preview").src = state.preview; $("#job-preview").hidden = false; }
    $("#cancel-button").disabled = !(state.status === "queued" || state.status === "running");
    $("#resume-button").disabled = !(state.kind === "fit" && (state.status === "cancelled" || state.status === "failed"));
  };
  const refreshQueue = async () => {
    try {
      const snap = await jsonOrError(await fetch("/api/jobs"));
      const list = $("#job-queue");
      list.innerHTML = "";
      const rows = (snap.current ? [snap.current] : []).concat(snap.queue);
      for (const j of rows) {
        const li = document.createElement("li");
        li.textContent = `${j.run} (${j.kind}, ${j.status})`;
        li.dataset.job = j.id;
        list.appendChild(li);
      }
    } catch (e) { /* the queue view is best effort */ }
  };
  const follow = (job) => {
    current = job;
    render(job);
    if (source) source.close();
    source = new EventSource(`/api/jobs/${job.id}/events`);
    source.onmessage = (ev) => {
      const state = JSON.parse(ev.data);
      current = state;
      render(state);
      refreshQueue();
      if (["done", "failed", "cancelled"].includes(state.status)) source.close();
    };
  };
  $("#train-submit").addEventListener("click", async () => {
    showError("");
    const form = new FormData($("#train-form"));
    if (!$("#data-upload").files[0]) form.delete("data_upload");
    for (const [k, v] of Array.from(form.entries())) if (v === "" && k !== "run_name") form.delete(k);
    try {
      const job = await jsonOrError(await fetch("/api/jobs", { method: "POST", body: form }));
      follow(job);
      refreshQueue();
    } catch (e) { showError(e.message); }
  });
  $("#cancel-button").addEventListener("click", async () => {
    if (!current) return;
    try { render(await jsonOrError(await fetch(`/api/jobs/${current.id}/cancel`, { method: "POST" }))); } catch (e) { showError(e.message); }
  });
  $("#resume-button").addEventListener("click", async () => {
    if (!current) return;
    try { follow(await jsonOrError(await fetch(`/api/jobs/${current.id}/resume`, { method: "POST" }))); refreshQueue(); } catch (e) { showError(e.message); }
  });
  refreshQueue();
  setInterval(refreshQueue, 3000);
}

const PAGES = { runs: initRuns, run: initRun, generate: initGenerate, edit: initEdit, train: initTrain };
document.addEventListener("DOMContentLoaded", () => {
  const init = PAGES[document.body.dataset.page];
  if (init) init();
});
