// bulktag dashboard: polls the HTTP API and renders jobs, progress and a results gallery.
// Plain DOM, no build step. Every text from the API goes through textContent (URIs and
// error reasons are user input), never innerHTML.
"use strict";

const POLL_MS = 1500;
const MODELS_POLL_MS = 10000;
const PAGE = 60;
const THUMB_PARALLEL = 4;

const state = {
  token: localStorage.getItem("bulktag-token") || "",
  selected: decodeURIComponent((location.hash.match(/job=([^&]+)/) || [])[1] || ""),
  jobs: [],
  untrainedModels: new Set(),
  galleryModels: new Set(), // model ids on the records shown
  polling: false,
  loaded: 0, // URIs of the selected job shown so far
  nextOffset: 0,
  cards: new Map(), // index -> card element
  thumbQueue: [],
  thumbsInFlight: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

class AuthError extends Error {}

async function api(path, asBlob = false) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const resp = await fetch(path, { headers });
  if (resp.status === 401) throw new AuthError("API token required");
  if (!resp.ok) {
    let detail = `${resp.status}`;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return asBlob ? resp.blob() : resp.json();
}

function setConnection(ok, text) {
  const node = $("connection");
  node.textContent = text;
  node.classList.toggle("down", !ok);
}

function handleError(err) {
  if (err instanceof AuthError) {
    $("token-form").hidden = false;
    setConnection(false, "token required");
  } else {
    setConnection(false, `error: ${err.message}`);
  }
}

// ---- formatting -------------------------------------------------------------------
function fmtRate(rate) { return rate ? rate.toFixed(1) : "–"; }
function fmtEta(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "–"; }
function basename(uri) { return uri.split(/[\\/]/).filter(Boolean).pop() || uri; }

// ---- jobs table -------------------------------------------------------------------
function jobRow(job) {
  const tr = el("tr", `job state-${job.state}`);
  tr.dataset.job = job.job;
  const done = job.ok + job.error;
  const pct = job.total ? Math.round((100 * done) / job.total) : 0;
  tr.append(el("td", "job-id", job.job), el("td", "state", job.state));
  const prog = el("td", "progress-col");
  const bar = el("div", "bar");
  const fill = el("div", "fill");
  fill.style.width = `${pct}%`;
  if (job.error) fill.classList.add("has-errors");
  bar.append(fill);
  prog.append(bar, el("span", "done", `${done} / ${job.total}`));
  tr.append(prog);
  tr.append(el("td", "num ok", job.ok), el("td", "num error", job.error));
  tr.append(el("td", "num deduped", job.deduped), el("td", "num rate", fmtRate(job.rate)));
  tr.append(el("td", "num eta", fmtEta(job.eta_seconds)), el("td", "created", fmtTime(job.created_at)));
  if (job.submit_error) tr.title = `submission stopped: ${job.submit_error}`;
  tr.classList.toggle("selected", job.job === state.selected);
  tr.addEventListener("click", () => selectJob(job.job));
  // Keyboard: Tab reaches each row, Enter or Space opens its gallery.
  tr.tabIndex = 0;
  tr.setAttribute("aria-selected", String(job.job === state.selected));
  tr.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      selectJob(job.job);
    }
  });
  return tr;
}

function renderJobs() {
  const tbody = document.querySelector("#jobs-table tbody");
  // Rows are rebuilt on every poll: keep keyboard focus on the same job's row.
  const focused = document.activeElement && document.activeElement.closest
    ? document.activeElement.closest("tr.job") : null;
  const focusedJob = focused ? focused.dataset.job : null;
  tbody.replaceChildren(...state.jobs.map(jobRow));
  if (focusedJob) {
    const again = [...tbody.children].find((tr) => tr.dataset.job === focusedJob);
    if (again) again.focus();
  }
  $("no-jobs").hidden = state.jobs.length > 0;
}

async function pollJobs() {
  if (state.polling) return; // a slow answer must not pile up requests
  state.polling = true;
  try {
    const { jobs } = await api("/jobs?limit=20");
    state.jobs = jobs;
    if (state.selected && !jobs.some((j) => j.job === state.selected)) {
      // An older job picked by URL: keep it in the table with its own status.
      try { state.jobs.push(await api(`/jobs/${encodeURIComponent(state.selected)}`)); }
      catch (e) { /* deleted */ }
    }
    renderJobs();
    setConnection(true, `live · ${new Date().toLocaleTimeString()}`);
    $("token-form").hidden = true;
    if (state.selected) await refreshGallery();
  } catch (err) {
    handleError(err);
  } finally {
    state.polling = false;
  }
}

// ---- untrained banner -------------------------------------------------------------
async function pollModels() {
  try {
    const { models } = await api("/models");
    state.untrainedModels = new Set(models.filter((m) => !m.trained).map((m) => m.model_id));
    updateBanner();
  } catch (err) {
    handleError(err);
  }
}

// The selected job's records name their model: warn when one of those is untrained. With
// no records on screen yet, warn when any registered worker process runs untrained weights.
function updateBanner() {
  const shown = [...state.galleryModels];
  const untrained = (shown.length ? shown : [...state.untrainedModels])
    .filter((m) => state.untrainedModels.has(m));
  $("untrained-banner").hidden = untrained.length === 0;
  $("untrained-detail").textContent = untrained.length
    ? ` Model ${untrained.join(", ")} has seeded random weights; ` +
      "install the official ones with `bulktag weights fetch` and restart the workers."
    : "";
}

// ---- gallery ----------------------------------------------------------------------
function selectJob(jobId) {
  if (jobId === state.selected && state.cards.size) return;
  state.selected = jobId;
  history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
  state.loaded = 0;
  state.nextOffset = 0;
  state.cards.clear();
  state.galleryModels = new Set();
  state.thumbQueue = [];
  $("cards").replaceChildren();
  $("gallery-job").textContent = jobId;
  $("gallery").hidden = false;
  renderJobs();
  refreshGallery(true).catch(handleError);
}

async function refreshGallery(grow = false) {
  const jobId = state.selected;
  const job = await api(`/jobs/${encodeURIComponent(jobId)}`);
  if (jobId !== state.selected) return;
  $("gallery").hidden = false;
  $("gallery-job").textContent = jobId;
  const done = job.ok + job.error;
  $("gallery-summary").textContent =
    `${job.state} · ${done} of ${job.total} done · ${job.ok} ok · ${job.error} error · ` +
    `${job.deduped} deduped · ${fmtRate(job.rate)} images/s · ETA ${fmtEta(job.eta_seconds)}` +
    (job.submit_error ? ` · submission stopped: ${job.submit_error}` : "");
  // Re-read the pages already shown while anything on them may still change.
  const want = Math.max(state.loaded, grow ? state.loaded + PAGE : PAGE);
  const unsettled = [...state.cards.values()].some((c) => c.dataset.status === "pending");
  if (grow || unsettled || state.cards.size < Math.min(want, job.total)) {
    await loadRecords(jobId, want);
  }
  await loadErrors(jobId, job.error);
}

async function loadRecords(jobId, count) {
  let offset = 0;
  const models = state.galleryModels;
  while (offset !== null && offset < count) {
    const limit = Math.min(1000, count - offset);
    const page = await api(`/jobs/${encodeURIComponent(jobId)}/records?offset=${offset}&limit=${limit}`);
    if (jobId !== state.selected) return;
    for (const item of page.items) {
      upsertCard(item);
      if (item.model) models.add(item.model);
    }
    offset = page.next_offset;
    state.nextOffset = offset;
  }
  state.loaded = state.cards.size;
  $("more").hidden = state.nextOffset === null || state.nextOffset === undefined;
  updateBanner();
}

async function loadErrors(jobId, errorCount) {
  $("errors").hidden = errorCount === 0;
  $("error-count").textContent = errorCount;
  if (!errorCount) return;
  const list = $("error-list");
  if (list.childElementCount >= Math.min(errorCount, 50) && list.dataset.job === jobId) return;
  // Each request scans a window of the job, so errors further on take more pages: follow
  // next_offset until 50 are shown, for at most 20 requests (100,000 URIs) per refresh.
  const items = [];
  let offset = 0;
  for (let calls = 0; calls < 20 && offset !== null && items.length < 50; calls++) {
    const page = await api(
      `/jobs/${encodeURIComponent(jobId)}/records?only=error&limit=${50 - items.length}&offset=${offset}`,
    );
    if (jobId !== state.selected) return;
    items.push(...page.items);
    offset = page.next_offset;
  }
  list.dataset.job = jobId;
  list.replaceChildren(...items.map((item) => {
    const li = el("li");
    li.append(el("span", "uri", item.uri), el("span", "reason", item.error));
    return li;
  }));
}

function upsertCard(item) {
  const old = state.cards.get(item.index);
  if (old && old.dataset.status === item.status) return;
  const card = el("figure", `card status-${item.status}`);
  card.dataset.index = item.index;
  card.dataset.status = item.status;
  const thumb = el("div", "thumb");
  card.append(thumb);
  const caption = el("figcaption");
  caption.append(el("div", "name", basename(item.uri)));
  caption.lastChild.title = item.uri;
  if (item.status === "ok") {
    const ol = el("ol", "labels");
    for (const t of item.top3 || []) {
      const li = el("li", "label");
      const bar = el("span", "score-bar");
      bar.style.width = `${Math.max(1, Math.round(t.score * 100))}%`;
      const name = el("span", "label-name", t.label);
      name.title = `${t.label} (class ${t.index})`;
      li.append(bar, name, el("span", "score", `${(t.score * 100).toFixed(1)}%`));
      ol.append(li);
    }
    caption.append(ol);
    queueThumb(item.index, thumb);
  } else if (item.status === "error") {
    thumb.append(el("span", "broken", "✕"));
    caption.append(el("p", "reason", item.error));
  } else {
    thumb.append(el("span", "spinner", "…"));
    caption.append(el("p", "pending", "waiting for a worker"));
  }
  card.append(caption);
  if (old) old.replaceWith(card);
  else insertInOrder(card, item.index);
  state.cards.set(item.index, card);
}

function insertInOrder(card, index) {
  const cards = $("cards");
  const after = [...cards.children].find((c) => Number(c.dataset.index) > index);
  cards.insertBefore(card, after || null);
}

// Thumbnails are fetched with the token (an <img src> cannot send headers), a few at once.
function queueThumb(index, holder) {
  state.thumbQueue.push({ jobId: state.selected, index, holder });
  pumpThumbs();
}

function pumpThumbs() {
  while (state.thumbsInFlight < THUMB_PARALLEL && state.thumbQueue.length) {
    const { jobId, index, holder } = state.thumbQueue.shift();
    if (jobId !== state.selected) continue;
    state.thumbsInFlight += 1;
    api(`/jobs/${encodeURIComponent(jobId)}/thumbs/${index}`, true)
      .then((blob) => {
        const img = el("img");
        img.alt = `thumbnail ${index}`;
        img.src = URL.createObjectURL(blob);
        holder.replaceChildren(img);
      })
      .catch((err) => holder.replaceChildren(el("span", "broken", "no preview")) || err)
      .finally(() => { state.thumbsInFlight -= 1; pumpThumbs(); });
  }
}

// ---- start ------------------------------------------------------------------------
function start() {
  $("token").value = state.token;
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    localStorage.setItem("bulktag-token", state.token);
    pollModels();
    pollJobs();
  });
  $("more").addEventListener("click", () => refreshGallery(true).catch(handleError));
  if (state.selected) selectJob(state.selected);
  pollModels();
  pollJobs();
  setInterval(pollJobs, POLL_MS);
  setInterval(pollModels, MODELS_POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
