// bulktag dashboard: the search box. GET /search for the labels typed in, then a card per
// hit with its thumbnail (/jobs/{job}/thumbs/{index}), labels and scores. Shares api(), el()
// and $() with dashboard.js; every text from the API goes through textContent.
"use strict";

const SEARCH_PAGE = 48;
const SEARCH_THUMBS_PARALLEL = 4;

const search = {
  params: null, // URLSearchParams of the current query, without offset
  nextOffset: null,
  shown: 0,
  generation: 0, // bumped per new query: late answers of an old one are dropped
  thumbs: [],
  inFlight: 0,
};

function searchParams() {
  const params = new URLSearchParams();
  const labels = $("search-labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  labels.forEach((label) => params.append("label", label));
  const min = parseFloat($("search-min").value);
  if (min > 0) params.set("min_score", String(Math.min(1, min)));
  params.set("limit", String(SEARCH_PAGE));
  return labels.length ? params : null;
}

function searchCard(item, wanted) {
  const card = el("figure", "card status-ok");
  card.dataset.job = item.job;
  card.dataset.index = item.index;
  const thumb = el("div", "thumb");
  thumb.append(el("span", "spinner", "…"));
  const caption = el("figcaption");
  const name = el("div", "name", basename(item.uri));
  name.title = item.uri;
  caption.append(name, el("div", "job-ref", `${item.job} #${item.index}`));
  const ol = el("ol", "labels");
  for (const t of item.top3 || []) {
    const li = el("li", wanted.has(t.index) ? "label match" : "label");
    const bar = el("span", "score-bar");
    bar.style.width = `${Math.max(1, Math.round(t.score * 100))}%`;
    const label = el("span", "label-name", t.label);
    label.title = `${t.label} (class ${t.index})`;
    li.append(bar, label, el("span", "score", `${(t.score * 100).toFixed(1)}%`));
    ol.append(li);
  }
  caption.append(ol);
  card.append(thumb, caption);
  search.thumbs.push({ generation: search.generation, item, thumb });
  return card;
}

function pumpSearchThumbs() {
  while (search.inFlight < SEARCH_THUMBS_PARALLEL && search.thumbs.length) {
    const { generation, item, thumb } = search.thumbs.shift();
    if (generation !== search.generation) continue;
    search.inFlight += 1;
    api(`/jobs/${encodeURIComponent(item.job)}/thumbs/${item.index}`, true)
      .then((blob) => {
        const img = el("img");
        img.alt = `thumbnail of ${basename(item.uri)}`;
        img.src = URL.createObjectURL(blob);
        thumb.replaceChildren(img);
      })
      .catch(() => thumb.replaceChildren(el("span", "broken", "no preview")))
      .finally(() => { search.inFlight -= 1; pumpSearchThumbs(); });
  }
}

async function runSearch(more = false) {
  const summary = $("search-summary");
  if (!more) {
    search.params = searchParams();
    search.generation += 1;
    search.shown = 0;
    search.nextOffset = 0;
    search.thumbs = [];
    $("search-cards").replaceChildren();
    $("search-more").hidden = true;
    if (!search.params) { summary.hidden = true; return; }
  }
  const generation = search.generation;
  const params = new URLSearchParams(search.params);
  params.set("offset", String(search.nextOffset || 0));
  let page;
  try {
    page = await api(`/search?${params}`);
  } catch (err) {
    if (err instanceof AuthError) { handleError(err); return; }
    summary.hidden = false;
    summary.className = "summary search-error";
    summary.textContent = err.message;
    return;
  }
  if (generation !== search.generation) return;
  const wanted = new Set(page.labels.map((l) => l.index));
  $("search-cards").append(...page.items.map((item) => searchCard(item, wanted)));
  search.shown += page.items.length;
  search.nextOffset = page.next_offset;
  summary.hidden = false;
  summary.className = "summary";
  const names = page.labels.map((l) => l.label).join(", ");
  summary.textContent = `${search.shown} photo${search.shown === 1 ? "" : "s"} with ${names}` +
    (search.params.get("min_score") ? ` at ≥ ${search.params.get("min_score")}` : "") +
    (page.next_offset !== null ? " so far" : "") + ` · model ${page.model}`;
  $("search-more").hidden = page.next_offset === null;
  pumpSearchThumbs();
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); runSearch(); });
  $("search-more").addEventListener("click", () => runSearch(true));
});
