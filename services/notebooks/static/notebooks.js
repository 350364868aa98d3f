// The commissioning page: templates -> form -> run -> progress -> rendered output -> history.
"use strict";
(function () {
  const api = document.body.dataset.api;
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("sciplat-token");
  let current = null; // job id shown in the run area
  let pollTimer = null;
  let selected = null;

  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    token = hash.get("token");
    sessionStorage.setItem("sciplat-token", token);
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function call(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (token) headers["Authorization"] = "Bearer " + token;
    const response = await fetch(api + path, Object.assign({}, options, { headers, credentials: "same-origin" }));
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      showSignin(body.message || "Not signed in");
      throw new Error(body.message || "not authorised");
    }
    return response;
  }

  function showSignin(message) {
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = token ? message : "";
  }

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token-input").value.trim();
    sessionStorage.setItem("sciplat-token", token);
    start();
  });

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  async function loadTemplates() {
    const response = await call("/templates");
    const { templates } = await response.json();
    const list = $("template-list");
    list.textContent = "";
    const groups = {};
    for (const t of templates) (groups[t.collection] = groups[t.collection] || []).push(t);
    for (const [collection, items] of Object.entries(groups)) {
      list.appendChild(el("div", { class: "collection" }, collection));
      const ul = el("ul");
      for (const t of items) {
        const li = el("li");
        const button = el("button", { class: "template", type: "button", "data-name": t.name }, t.title);
        if (t.status === "broken") {
          button.classList.add("broken");
          button.title = "Broken: " + t.error;
          button.textContent = t.title + " (broken)";
        }
        button.addEventListener("click", () => selectTemplate(t.name));
        li.appendChild(button);
        ul.appendChild(li);
      }
      list.appendChild(ul);
    }
  }

  async function selectTemplate(name) {
    selected = name;
    for (const b of document.querySelectorAll("button.template")) {
      b.classList.toggle("selected", b.dataset.name === name);
    }
    const response = await call("/templates/" + name + "/form");
    $("form-area").innerHTML = await response.text(); // rendered server-side, autoescaped
    const form = $("form-area").querySelector("form");
    if (form) form.addEventListener("submit", submitRun);
    loadHistory();
  }

  function formParameters(form) {
    const parameters = {};
    for (const input of form.querySelectorAll("[data-type]")) {
      const type = input.dataset.type;
      let value = input.type === "checkbox" ? input.checked : input.value;
      if ((type === "integer" || type === "number") && value !== "" && !isNaN(Number(value))) value = Number(value);
      parameters[input.name] = value;
    }
    return parameters;
  }

  async function submitRun(event) {
    event.preventDefault();
    const form = event.target;
    const body = {
      parameters: formParameters(form),
      image: form.querySelector("[name=__image]").value,
      fresh: form.querySelector("[name=__fresh]").checked,
    };
    const response = await call("/templates/" + form.dataset.template + "/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const job = await response.json();
    if (!response.ok) {
      showRunError(job.message || "The run was refused");
      return;
    }
    showRun(job.id);
  }

  function showRunError(message) {
    $("run-area").hidden = false;
    $("run-title").textContent = "Run refused";
    $("run-status").textContent = "";
    $("run-error").hidden = false;
    $("run-error-message").textContent = message;
    $("run-traceback").textContent = "";
    $("output").hidden = true;
  }

  async function showRun(id) {
    current = id;
    const url = new URL(location.href);
    url.searchParams.set("run", id);
    history.replaceState(null, "", url.pathname + url.search);
    $("run-area").hidden = false;
    $("output").hidden = true;
    $("run-error").hidden = true;
    await poll();
  }

  async function poll() {
    clearTimeout(pollTimer);
    const id = current;
    const response = await call("/jobs/" + id);
    const job = await response.json();
    if (id !== current) return;
    if (!response.ok) { showRunError(job.message || "No such run"); return; }
    const params = Object.entries(job.parameters).map(([k, v]) => k + "=" + v).join(", ");
    $("run-title").textContent = job.title + (params ? " (" + params + ")" : "");
    $("run-status").textContent = job.status + (job.cached ? " (cached)" : "");
    $("run-status").className = "status-" + job.status;
    $("run-progress").max = Math.max(job.progress.total, 1);
    $("run-progress").value = job.progress.done;
    $("run-cells").textContent = job.progress.done + " / " + job.progress.total + " cells";
    $("run-link").href = job.page_url;
    $("share-button").textContent = job.shared ? "Shared (click to unshare)" : "Share";
    $("share-button").dataset.shared = job.shared ? "1" : "";
    $("cancel-button").hidden = !(job.status === "queued" || job.status === "running");
    if (job.status === "queued" || job.status === "running") {
      pollTimer = setTimeout(poll, 700);
      return;
    }
    if (job.error) {
      $("run-error").hidden = false;
      const where = job.error.index !== null && job.error.index !== undefined ? "Cell " + job.error.index + ": " : "";
      $("run-error-message").textContent = where + job.error.ename + ": " + job.error.evalue;
      $("run-traceback").textContent = (job.error.traceback || "").replace(/\x1b\[[0-9;]*m/g, "");
    }
    const html = await call("/jobs/" + id + "/html");
    if (html.ok && id === current) {
      // A fresh frame each time: Chromium leaves a reused srcdoc frame blank.
      const fresh = $("output").cloneNode(false);
      fresh.srcdoc = await html.text();
      fresh.hidden = false;
      $("output").replaceWith(fresh);
      $("ipynb-link").hidden = false;
      $("ipynb-link").onclick = (e) => { e.preventDefault(); download(id); };
    }
    loadHistory();
  }

  async function download(id) {
    const response = await call("/jobs/" + id + "/ipynb");
    const blob = await response.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: "run-" + id + ".ipynb" });
    a.click();
  }

  $("share-button").addEventListener("click", async () => {
    const shared = !$("share-button").dataset.shared;
    await call("/jobs/" + current + "/share", {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ shared }),
    });
    poll();
  });
  $("cancel-button").addEventListener("click", async () => {
    await call("/jobs/" + current, { method: "DELETE" });
    poll();
  });

  async function loadHistory() {
    const query = selected ? "?shared=true&template=" + encodeURIComponent(selected) : "?shared=true";
    const response = await call("/jobs" + query);
    const { jobs } = await response.json();
    const body = $("history");
    body.textContent = "";
    for (const job of jobs) {
      const row = el("tr");
      const link = el("a", { href: job.page_url }, (job.created || "").replace("T", " ").slice(0, 19));
      link.addEventListener("click", (e) => { e.preventDefault(); showRun(job.id); });
      const cell = el("td"); cell.appendChild(link); row.appendChild(cell);
      row.appendChild(el("td", {}, job.template || job.title));
      row.appendChild(el("td", {}, Object.entries(job.parameters).map(([k, v]) => k + "=" + v).join(", ")));
      row.appendChild(el("td", { class: "status-" + job.status }, job.status));
      row.appendChild(el("td", {}, job.owner));
      body.appendChild(row);
    }
  }

  async function start() {
    try {
      await loadTemplates();
    } catch (e) {
      return;
    }
    $("signin").hidden = true;
    $("app").hidden = false;
    const run = new URLSearchParams(location.search).get("run");
    const template = new URLSearchParams(location.search).get("template");
    if (template) await selectTemplate(template);
    else loadHistory();
    if (run) showRun(run);
  }
  start();
})();
