// bulktag upload page: drop or pick photos, see each one's top-3; submit a source; cancel
// or retry the selected job. Loaded after dashboard.js and uses its globals (state, $, el,
// api, AuthError, pollJobs, selectJob). Plain DOM, no build step; every text from the
// API or the user goes through textContent, never innerHTML.
"use strict";

const UPLOAD_WAIT_S = 30; // POST /uploads?wait=: most uploads answer with their records
const UPLOAD_POLL_MS = 500; // then, if any record is still pending, poll for it
const UPLOAD_POLL_LIMIT_MS = 180000;

// Job actions the page offers, each a request and a sentence for what happened. Delete and
// search come with the results database (issue 12): add them here with `available: true`
// and unhide their controls; nothing else on the page needs to change.
const JOB_ACTIONS = {
  cancel: {
    available: true,
    button: "cancel-job",
    run: (job) => apiSend("DELETE", `/jobs/${encodeURIComponent(job)}`),
    done: (job, body) => `Job ${job} is ${body.state}: chunks not yet started are skipped.`,
  },
  retry: {
    available: true,
    button: "retry-job",
    run: (job) => apiSend("POST", `/jobs/${encodeURIComponent(job)}/retry`),
    done: (job, body) =>
      body.errors
        ? `Job ${job}: ${body.errors} failed URIs sent again (retry round ${body.round}).`
        : `Job ${job} has no errors to retry.`,
  },
  delete: {
    available: false, // DELETE /jobs/{id}?purge=true, once records live in the database
    button: "delete-job",
    run: (job) => apiSend("DELETE", `/jobs/${encodeURIComponent(job)}?purge=true`),
    done: (job) => `Job ${job} and its records were deleted.`,
  },
  // search: { available: false, ... }  // a label search over records, same database
};

// ---- requests -----------------------------------------------------------------------
function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

// A failed request as one sentence a person can act on.
async function failureText(resp) {
  if (resp.status === 401) return "The API needs a token: enter it in the token box above.";
  let detail = `HTTP ${resp.status}`;
  try {
    const body = await resp.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg).join("; ");
  } catch (e) { /* not JSON */ }
  if (resp.status === 413) return `Too much at once: ${detail}`;
  return detail;
}

async function apiSend(method, path, body) {
  const headers = authHeaders();
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new Error(`Could not reach the bulktag API (${err.message}).`);
  }
  if (resp.status === 401) $("token-form").hidden = false;
  if (!resp.ok) throw new Error(await failureText(resp));
  return resp.json();
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("failed", isError);
}

// ---- upload cards -------------------------------------------------------------------
function uploadCard(file) {
  const card = el("figure", "card upload-card status-pending");
  card.dataset.status = "pending";
  const thumb = el("div", "thumb");
  const img = el("img");
  img.alt = `preview of ${file.name}`;
  img.src = URL.createObjectURL(file);
  img.addEventListener("load", () => URL.revokeObjectURL(img.src));
  // A file the browser cannot show (a text file named .jpg) gets a mark, not a broken icon.
  img.addEventListener("error", () => img.replaceWith(el("span", "broken", "✕")));
  const spinner = el("span", "spin");
  spinner.setAttribute("role", "img");
  spinner.setAttribute("aria-label", "tagging");
  thumb.append(img, spinner);
  const caption = el("figcaption");
  const name = el("div", "name", file.name);
  name.title = file.name;
  caption.append(name, el("p", "pending", "uploading…"));
  card.append(thumb, caption);
  return card;
}

function showRecord(card, item) {
  if (!item || item.status === "pending") {
    card.querySelector(".pending").textContent = "waiting for a worker…";
    return false;
  }
  card.classList.remove("status-pending");
  card.classList.add(`status-${item.status}`);
  card.dataset.status = item.status;
  const spin = card.querySelector(".spin");
  if (spin) spin.remove();
  const caption = card.querySelector("figcaption");
  const name = caption.querySelector(".name");
  if (item.status === "ok") {
    const ol = el("ol", "labels");
    ol.setAttribute("aria-label", "top 3 labels");
    for (const t of item.top3 || []) {
      const li = el("li", "label");
      li.dataset.index = t.index;
      li.dataset.score = t.score;
      const bar = el("span", "score-bar");
      bar.style.width = `${Math.max(1, Math.round(t.score * 100))}%`;
      const label = el("span", "label-name", t.label);
      label.title = `${t.label} (ImageNet class ${t.index})`;
      li.append(bar, label, el("span", "score", `${(t.score * 100).toFixed(1)}%`));
      ol.append(li);
    }
    caption.replaceChildren(name, ol);
  } else {
    const thumb = card.querySelector(".thumb");
    if (!thumb.querySelector("img, .broken")) thumb.replaceChildren(el("span", "broken", "✕"));
    caption.replaceChildren(name, el("p", "reason", item.error || "failed"));
  }
  return true;
}

function failCards(cards, text) {
  for (const card of cards) showRecord(card, { status: "error", error: text });
}

async function uploadFiles(fileList) {
  const files = [...fileList];
  if (!files.length) return;
  // Each photo shows at once, newest first, with its own preview and a spinner.
  const cards = files.map(uploadCard);
  $("upload-cards").prepend(...cards);
  say("upload-status", `Uploading ${files.length} file${files.length > 1 ? "s" : ""}…`);
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  let body;
  try {
    const resp = await fetch(`/uploads?wait=${UPLOAD_WAIT_S}`, {
      method: "POST", headers: authHeaders(), body: form,
    });
    if (resp.status === 401) $("token-form").hidden = false;
    if (!resp.ok) throw new Error(await failureText(resp));
    body = await resp.json();
  } catch (err) {
    const text = err instanceof TypeError
      ? `Could not reach the bulktag API (${err.message}).` : err.message;
    failCards(cards, `Upload failed: ${text}`);
    say("upload-status", `Upload failed: ${text}`, true);
    return;
  }
  cards.forEach((card, i) => { card.dataset.job = body.job; card.dataset.index = i; });
  let pending = body.items.filter((item) => !showRecord(cards[item.index], item)).length;
  say("upload-status", uploadSummary(body.job, body.items));
  if (typeof pollJobs === "function") pollJobs();
  const started = Date.now();
  while (pending && Date.now() - started < UPLOAD_POLL_LIMIT_MS) {
    await new Promise((r) => setTimeout(r, UPLOAD_POLL_MS));
    try {
      const page = await api(
        `/jobs/${encodeURIComponent(body.job)}/records?offset=0&limit=${cards.length}`);
      pending = page.items.filter((item) => !showRecord(cards[item.index], item)).length;
      say("upload-status", uploadSummary(body.job, page.items));
    } catch (err) {
      say("upload-status", `Lost track of job ${body.job}: ${err.message}`, true);
      return;
    }
  }
  if (pending) say("upload-status", `Job ${body.job}: still waiting for a worker.`, true);
}

function uploadSummary(job, items) {
  const ok = items.filter((i) => i.status === "ok").length;
  const bad = items.filter((i) => i.status === "error").length;
  const waiting = items.length - ok - bad;
  return `Job ${job}: ${ok} tagged, ${bad} failed` + (waiting ? `, ${waiting} in progress…` : ".");
}

// ---- source submission and job actions ---------------------------------------------
async function submitSource(ev) {
  ev.preventDefault();
  const source = $("source-input").value.trim();
  if (!source) return;
  const priority = $("source-high").checked ? "high" : "normal";
  say("action-status", `Submitting ${source}…`);
  try {
    const job = await apiSend("POST", "/jobs", { source, priority });
    say("action-status", job.state === "enumerating"
      ? `Job ${job.job} created; still listing ${source} (${job.total} URIs so far).`
      : `Job ${job.job} created with ${job.total} URIs.`);
    $("source-input").value = "";
    selectJob(job.job);
  } catch (err) {
    say("action-status", `Could not submit ${source}: ${err.message}`, true);
  }
}

async function runAction(name) {
  const action = JOB_ACTIONS[name];
  const job = state.selected;
  if (!job || !action.available) return;
  const button = $(action.button);
  button.disabled = true;
  try {
    const body = await action.run(job);
    say("action-status", action.done(job, body));
    if (typeof pollJobs === "function") pollJobs();
  } catch (err) {
    say("action-status", `Could not ${name} job ${job}: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
}

// ---- start ----------------------------------------------------------------------------
function startUploads() {
  const input = $("upload-input");
  input.addEventListener("change", () => {
    uploadFiles(input.files);
    input.value = ""; // the same photo may be chosen again
  });
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    uploadFiles(ev.dataTransfer.files);
  });
  $("source-form").addEventListener("submit", submitSource);
  for (const [name, action] of Object.entries(JOB_ACTIONS)) {
    const button = $(action.button);
    if (!button) continue;
    button.hidden = !action.available;
    button.addEventListener("click", () => runAction(name));
  }
}

document.addEventListener("DOMContentLoaded", startUploads);
