/* Mugle web page: vanilla JS, no build step.
 *
 * The page state lives in the URL, so links can be shared and Back/Forward replay it: every user action
 * goes through navigate() (pushState) and popstate re-renders from the URL alone. Parameters: song=ID or
 * tag=NAME (a situation), method, novelty, xa=1 (exclude the artist), genre (repeatable), yf/yt (years),
 * div (diversity) and neg=ID,ID (songs marked "not like this" for the current song's list).
 *
 * The API base is found at start-up: a non-empty <meta name="mugle-api-base"> wins; otherwise the
 * page probes "api/health" (nginx deployment: the API is proxied under /api/) and then "health"
 * (the app serves page and API from one origin).
 */
"use strict";

(() => {
  // The ranking methods come from the API (GET health, field "methods", default first): the page only
  // knows how to label them. "compare" is the page's own view: every method but the default side by side.
  let METHODS = [];
  let VIEWS = ["compare"];
  let COMPARE = [];
  const MODEL_LABEL = { music2vec: "Music2Vec", tcae: "TCAE", cel: "CEL" };
  const METHOD_LABEL = {
    score_total: "종합 · score total",
    each_top3: "모델별 top 3 · each top 3",
    music2vec: "플레이리스트 · Music2Vec",
    tcae: "소리 · TCAE",
    cel: "둘 다 · CEL",
    compare: "비교 · compare",
  };
  const methodLabel = (m) => METHOD_LABEL[m] || m;
  const defaultMethod = () => METHODS[0] || "score_total";
  const K = 10;
  const SUGGEST_DELAY_MS = 180;
  const PROBE_TIMEOUT_MS = 4000;
  const REQUEST_TIMEOUT_MS = 20000;

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("search-form"), q: $("q"), list: $("suggestions"), searchStatus: $("search-status"),
    tagForm: $("tag-form"), tagQ: $("tag-q"), tagList: $("tag-suggestions"), tagStatus: $("tag-status"),
    genre: $("genre"), yearFrom: $("year-from"), yearTo: $("year-to"),
    diversity: $("diversity"), diversityOut: $("diversity-out"), negatives: $("negatives"),
    novelty: $("novelty"), noveltyOut: $("novelty-out"), xa: $("exclude-artist"),
    message: $("message"), song: $("song"), songTitle: $("song-title"), songMeta: $("song-meta"),
    melFig: $("mel-figure"), mel: $("mel"), mapFig: $("map-figure"), map: $("map"),
    mapModel: $("map-model"), mapCaption: $("map-caption"), results: $("results"),
    uploadForm: $("upload-form"), uploadFile: $("upload-file"), uploadMethod: $("upload-method"),
    drop: $("drop"), uploadMsg: $("upload-message"), uploadResults: $("upload-results"),
    uploadMelFig: $("upload-mel-figure"), uploadMel: $("upload-mel"), apiInfo: $("api-info"),
    methods: $("methods"),
  };

  let apiBase = null;          // absolute URL ending in "/", or null until found
  let gemThreshold = null;     // popularity at or below which a song is a "hidden gem"
  let loadSeq = 0;             // drops answers of superseded loads (fast clicking, Back)
  let mapPoints = [];          // [{x, y, song_id}] in CSS pixels, for click hit-testing

  // -- API access -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function detailText(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return JSON.stringify(detail);
  }

  /** fetch JSON from the API; throws ApiError (status 0 = network failure or timeout). */
  async function api(path, { signal, method = "GET", body, json = false, timeout = REQUEST_TIMEOUT_MS } = {}) {
    if (!apiBase) throw new ApiError(0, "API를 찾지 못했습니다 · API not reachable");
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    if (signal) signal.addEventListener("abort", () => ctl.abort(), { once: true });
    let res;
    try {
      const headers = { Accept: "application/json" };
      if (json) headers["Content-Type"] = "application/json";
      res = await fetch(apiBase + path, { method, body, signal: ctl.signal, headers });
    } catch (err) {
      if (signal && signal.aborted) throw err;
      throw new ApiError(0, "요청이 실패했습니다 (네트워크 또는 시간 초과) · request failed (network or timeout)");
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      const detail = data && data.detail !== undefined ? detailText(data.detail) : res.statusText;
      throw new ApiError(res.status, detail || `HTTP ${res.status}`);
    }
    return data;
  }

  /** POST a JSON body to the API (same errors as api()). */
  function apiJson(path, body) {
    return api(path, { method: "POST", body: JSON.stringify(body), json: true });
  }

  async function probe(base) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), PROBE_TIMEOUT_MS);
    try {
      const res = await fetch(new URL("health", base).href, { signal: ctl.signal });
      if (!res.ok) return null;
      const data = await res.json();
      return data && data.status === "ok" ? data : null;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async function findApi() {
    const meta = document.querySelector('meta[name="mugle-api-base"]');
    const configured = meta && meta.content.trim();
    const candidates = configured ? [configured] : ["api/", "./"];
    for (const c of candidates) {
      let base = new URL(c, document.baseURI).href;
      if (!base.endsWith("/")) base += "/";
      const health = await probe(base);
      if (health) return { base, health };
    }
    return null;
  }

  // -- URL state --------------------------------------------------------------------------------

  function unit(raw) {
    const x = Number.parseFloat(raw || "0");
    return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
  }

  function year(raw) {
    return raw !== null && /^\d{1,4}$/.test(raw) ? raw : null;
  }

  function readState() {
    const p = new URLSearchParams(location.search);
    const raw = p.get("song");
    const song = raw !== null && /^\d{1,18}$/.test(raw) ? raw : null;
    const tagRaw = p.get("tag");
    const tag = song === null && tagRaw !== null && tagRaw.trim() ? tagRaw.trim().slice(0, 200) : null;
    const method = VIEWS.includes(p.get("method")) ? p.get("method") : defaultMethod();
    const neg = (p.get("neg") || "").split(",").filter((x) => /^\d{1,18}$/.test(x)).slice(0, 100);
    return {
      song, badSong: raw !== null && song === null ? raw : null, tag, method, novelty: unit(p.get("novelty")),
      xa: p.get("xa") === "1", genre: p.getAll("genre").filter(Boolean).slice(0, 20),
      yf: year(p.get("yf")), yt: year(p.get("yt")), div: unit(p.get("div")), neg,
    };
  }

  function stateUrl(s) {
    const p = new URLSearchParams();
    if (s.song !== null) p.set("song", s.song);
    else if (s.tag) p.set("tag", s.tag);
    if (s.method !== defaultMethod()) p.set("method", s.method);
    if (s.novelty > 0) p.set("novelty", String(s.novelty));
    if (s.xa) p.set("xa", "1");
    for (const g of s.genre) p.append("genre", g);
    if (s.yf !== null) p.set("yf", s.yf);
    if (s.yt !== null) p.set("yt", s.yt);
    if (s.div > 0) p.set("div", String(s.div));
    if (s.song !== null && s.neg.length) p.set("neg", s.neg.join(","));
    const qs = p.toString();
    return location.pathname + (qs ? "?" + qs : "");
  }

  function controlsState() {
    const checked = document.querySelector('input[name="method"]:checked');
    const s = readState();
    return {
      song: s.song,
      tag: s.tag,
      neg: s.neg,
      method: checked ? checked.value : defaultMethod(),
      novelty: Number.parseFloat(el.novelty.value) || 0,
      xa: el.xa.checked,
      genre: el.genre.value ? [el.genre.value] : [],
      yf: year(el.yearFrom.value.trim() || null),
      yt: year(el.yearTo.value.trim() || null),
      div: Number.parseFloat(el.diversity.value) || 0,
    };
  }

  function syncControls(s) {
    const radio = document.querySelector(`input[name="method"][value="${s.method}"]`);
    if (radio) radio.checked = true;
    el.novelty.value = String(s.novelty);
    el.noveltyOut.textContent = s.novelty.toFixed(1);
    el.xa.checked = s.xa;
    const g = s.genre[0] || "";
    if (g && ![...el.genre.options].some((o) => o.value === g)) el.genre.append(h("option", { value: g, text: g }));
    el.genre.value = g;
    el.yearFrom.value = s.yf ?? "";
    el.yearTo.value = s.yt ?? "";
    el.diversity.value = String(s.div);
    el.diversityOut.textContent = s.div.toFixed(1);
    if (s.tag && document.activeElement !== el.tagQ) el.tagQ.value = s.tag;
    el.negatives.hidden = !(s.song !== null && s.neg.length);
    el.negatives.querySelector("span").textContent = `제외한 곡 ${s.neg.length}개 · ${s.neg.length} song(s) marked "not like this"`;
  }

  function navigate(changes) {
    const next = { ...readState(), ...changes };
    const url = stateUrl(next);
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    render();
  }

  // -- small DOM helpers ------------------------------------------------------------------------

  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function showMessage(node, text, kind = "info") {
    node.textContent = text;
    node.dataset.kind = kind;
    node.hidden = !text;
  }

  function errorText(err, what) {
    if (err instanceof ApiError) {
      if (err.status === 404) return `${what}: 찾을 수 없습니다 · not found (${err.message})`;
      if (err.status === 0) return `${what}: ${err.message}`;
      return `${what}: 요청 오류 ${err.status} · request failed: ${err.message}`;
    }
    return `${what}: ${err && err.message ? err.message : err}`;
  }

  // -- suggestion boxes (combobox): songs by title, situations by tag ---------------------------

  /**
   * Wire a text input to a suggestion list (ARIA combobox): typing asks `fetchItems(text, signal)` after a
   * short pause, arrows move through the options, Enter or a click picks one (`onPick(item)`).
   */
  function combobox({ form, input, list, status, idPrefix, fetchItems, renderItem, describe, onPick, what }) {
    let items = [];
    let current = -1;
    let ctl = null;
    let timer = 0;

    function close() {
      list.hidden = true;
      list.replaceChildren();
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      items = [];
      current = -1;
    }

    function setActive(i) {
      const options = list.querySelectorAll('[role="option"]');
      if (!options.length) return;
      current = (i + options.length) % options.length;
      options.forEach((o, j) => o.setAttribute("aria-selected", j === current ? "true" : "false"));
      input.setAttribute("aria-activedescendant", options[current].id);
      options[current].scrollIntoView({ block: "nearest" });
    }

    function show(results) {
      items = results;
      current = -1;
      list.replaceChildren(...results.map((item, i) => {
        const li = renderItem(item);
        li.id = `${idPrefix}-${i}`;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        // mousedown, not click: it fires before the input's blur closes the list
        li.addEventListener("mousedown", (ev) => { ev.preventDefault(); pick(item); });
        return li;
      }));
      list.hidden = results.length === 0;
      input.setAttribute("aria-expanded", results.length ? "true" : "false");
    }

    async function suggest(query) {
      if (ctl) ctl.abort();
      const text = query.trim();
      if (!text) {
        close();
        showMessage(status, "");
        return;
      }
      ctl = new AbortController();
      const mine = ctl;
      try {
        const results = await fetchItems(text.slice(0, 200), mine.signal);
        if (mine.signal.aborted) return;
        show(results);
        showMessage(status, describe(results.length, text));
      } catch (err) {
        if (mine.signal.aborted) return;
        close();
        showMessage(status, errorText(err, what), "error");
      }
    }

    function pick(item) {
      close();
      showMessage(status, "");
      onPick(item);
    }

    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => suggest(input.value), SUGGEST_DELAY_MS);
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowDown") { ev.preventDefault(); if (!list.hidden) setActive(current + 1); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); if (!list.hidden) setActive(current - 1); }
      else if (ev.key === "Escape") close();
    });
    input.addEventListener("blur", () => setTimeout(close, 150));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (current >= 0 && items[current]) return pick(items[current]);
      clearTimeout(timer);
      await suggest(input.value);
      if (items.length) pick(items[0]);
    });
  }

  combobox({
    form: el.form, input: el.q, list: el.list, status: el.searchStatus, idPrefix: "sugg", what: "검색 · search",
    fetchItems: async (text, signal) =>
      (await api(`search?${new URLSearchParams({ q: text, limit: "8" })}`, { signal })).results,
    renderItem: (s) => h("li", { "data-song-id": s.song_id },
      h("span", { class: "s-title", text: s.title }), " ", h("span", { class: "s-artist", text: s.artists.join(", ") })),
    describe: (n, text) => (n ? `${n}곡 · songs` : `“${text}”에 맞는 곡이 없습니다 · no songs match`),
    onPick: (song) => {
      el.q.value = song.title;
      // a new song starts a new list: its "not like this" choices start empty
      navigate({ song: String(song.song_id), tag: null, neg: [] });
    },
  });

  combobox({
    form: el.tagForm, input: el.tagQ, list: el.tagList, status: el.tagStatus, idPrefix: "tagsugg",
    what: "상황 · situation",
    fetchItems: async (text, signal) =>
      (await api(`tags?${new URLSearchParams({ q: text, limit: "8" })}`, { signal })).results,
    renderItem: (t) => h("li", { "data-tag": t.tag },
      h("span", { class: "s-title", text: `#${t.tag}` }), " ",
      h("span", { class: "s-artist", text: `플레이리스트 ${t.playlists} · playlists` })),
    describe: (n, text) => (n ? `${n}개 · tags` : `“${text}”에 맞는 상황이 없습니다 · no tags match`),
    onPick: (t) => {
      el.tagQ.value = t.tag;
      navigate({ tag: t.tag, song: null, neg: [] });
    },
  });

  // -- controls -----------------------------------------------------------------------------------

  function setMethods(list) {
    METHODS = list;
    VIEWS = [...list, "compare"];
    COMPARE = list.slice(1);
    el.methods.replaceChildren(...VIEWS.map((m) => h("label", {},
      h("input", { type: "radio", name: "method", value: m, onchange: () => navigate(controlsState()) }),
      " " + methodLabel(m))));
  }
  el.novelty.addEventListener("input", () => { el.noveltyOut.textContent = Number(el.novelty.value).toFixed(1); });
  el.novelty.addEventListener("change", () => navigate(controlsState()));
  el.xa.addEventListener("change", () => navigate(controlsState()));
  el.genre.addEventListener("change", () => navigate(controlsState()));
  for (const input of [el.yearFrom, el.yearTo]) input.addEventListener("change", () => navigate(controlsState()));
  el.diversity.addEventListener("input", () => { el.diversityOut.textContent = Number(el.diversity.value).toFixed(1); });
  el.diversity.addEventListener("change", () => navigate(controlsState()));
  el.negatives.querySelector("button").addEventListener("click", () => navigate({ neg: [] }));
  el.mapModel.addEventListener("change", () => {
    const s = readState();
    if (s.song !== null) drawMap(s.song, loadSeq);
  });
  window.addEventListener("popstate", () => render());
  $("home-link").addEventListener("click", (ev) => { ev.preventDefault(); navigate({ song: null, tag: null, neg: [] }); });

  // -- recommendations ----------------------------------------------------------------------------

  function recParams(s, method) {
    const p = new URLSearchParams({ method, k: String(K) });
    if (s.novelty > 0) p.set("novelty", String(s.novelty));
    if (s.xa && s.song !== null) p.set("exclude_artist", "true");
    for (const g of s.genre) p.append("genre", g);
    if (s.yf !== null) p.set("year_from", s.yf);
    if (s.yt !== null) p.set("year_to", s.yt);
    if (s.div > 0) p.set("diversity", String(s.div));
    return p;
  }

  /** One list of the current state: a tag's songs, a song's neighbours, or (with negatives) POST /recommend. */
  function fetchList(s, method) {
    if (s.tag !== null && s.song === null) return api(`recommend/tag/${encodeURIComponent(s.tag)}?${recParams(s, method)}`);
    if (!s.neg.length) return api(`recommend/${s.song}?${recParams(s, method)}`);
    const body = {
      song_ids: [Number(s.song)], k: K, method, novelty: s.novelty, exclude_artist: s.xa, genre: s.genre,
      diversity: s.div, negative_ids: s.neg.map(Number),
    };
    if (s.yf !== null) body.year_from = Number(s.yf);
    if (s.yt !== null) body.year_to = Number(s.yt);
    return apiJson("recommend", body).then((a) => ({ ...a, song: a.seeds[0] }));
  }

  function notLikeThis(song) {
    const s = readState();
    if (s.song === null || s.neg.includes(String(song.song_id))) return;
    navigate({ neg: [...s.neg, String(song.song_id)].slice(-100) });
  }

  function isGem(song) {
    return gemThreshold !== null && song.popularity <= gemThreshold;
  }

  function songLink(song, text) {
    const s = readState();
    const href = stateUrl({ ...s, song: String(song.song_id), tag: null, neg: [] });
    return h("a", {
      href, class: "song-link", "data-song-id": song.song_id,
      onclick: (ev) => {
        if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
        ev.preventDefault();
        navigate({ song: String(song.song_id), tag: null, neg: [] });
        window.scrollTo({ top: 0, behavior: "smooth" });
      },
    }, text);
  }

  function whyBadges(ranks) {
    if (!ranks) return null;
    const parts = Object.keys(MODEL_LABEL).map((m) => {
      const r = ranks[m];
      return h("span", { class: r ? "rank hit" : "rank miss", title: r ? `${MODEL_LABEL[m]} ${r}위` : `${MODEL_LABEL[m]}: 순위 밖` },
        `${MODEL_LABEL[m]} ${r ? "#" + r : "–"}`);
    });
    // The co-occurrence list is not a model and older versions lack it: shown only where it placed the song.
    if (ranks.cooc) {
      parts.push(h("span", { class: "rank hit cooc", title: `같은 플레이리스트에 자주 · often in the same playlists: ${ranks.cooc}위` },
        `함께 · co-listed #${ranks.cooc}`));
    }
    return h("p", { class: "why" }, h("span", { class: "visually-hidden", text: "추천 이유 · ranked by: " }), parts);
  }

  function card(song, { compact = false, linked = true, avoidable = false } = {}) {
    const title = linked ? songLink(song, song.title) : h("span", { text: song.title });
    return h("li", { class: compact ? "card compact" : "card", "data-song-id": song.song_id },
      h("div", { class: "card-head" },
        h("strong", { class: "title" }, title),
        isGem(song) ? h("span", { class: "gem-badge", title: `인기 ${song.popularity} ≤ ${gemThreshold}` }, "숨은 명곡 · hidden gem") : null,
        avoidable ? h("button", {
          type: "button", class: "not-like", title: "이 곡과 비슷한 곡을 덜 추천 · fewer songs like this one",
          "aria-label": `${song.title}: 이런 곡은 별로 · not like this`, onclick: () => notLikeThis(song),
        }, "✕ 별로 · not like this") : null),
      h("p", { class: "artists", text: song.artists.join(", ") || "—" }),
      compact ? null : h("p", { class: "genres" }, song.genres.map((g) => h("span", { class: "chip", text: g }))),
      whyBadges(song.ranks),
      h("p", { class: "small nums" },
        song.score !== undefined ? `점수 · score ${Number(song.score).toFixed(3)}` : "",
        ` · 인기 · popularity ${song.popularity}`));
  }

  function recList(recs, compact, avoidable) {
    if (!recs.length) {
      return h("p", { class: "empty" }, "추천할 곡이 없습니다 (이 곡은 플레이리스트와 오디오가 모두 없거나 조건에 맞는 곡이 없습니다) · no recommendations");
    }
    return h("ol", { class: "cards" }, recs.map((r) => card(r, { compact, avoidable })));
  }

  function showSong(song) {
    el.song.hidden = false;
    el.songTitle.textContent = song.title;
    const bits = [song.artists.join(", "), song.album, song.genres.join(" / "), song.issue_date, `인기 · popularity ${song.popularity}`];
    el.songMeta.replaceChildren(bits.filter(Boolean).join(" · "), isGem(song) ? h("span", { class: "gem-badge" }, " 숨은 명곡 · hidden gem") : "");
    document.title = `${song.title} · Mugle`;
  }

  function showTag(tag) {
    el.song.hidden = false;
    el.songTitle.textContent = `#${tag}`;
    el.songMeta.replaceChildren("상황·분위기에 맞는 곡 · songs for this situation or mood (playlist tag)");
    el.melFig.hidden = true;
    el.mapFig.hidden = true;
    document.title = `#${tag} · Mugle`;
  }

  /** Record which URL state the page now shows (tests and tools wait for this after a navigation). */
  function rendered() {
    document.body.dataset.loaded = location.search;
  }

  async function render() {
    const s = readState();
    delete document.body.dataset.loaded;
    syncControls(s);
    const seq = ++loadSeq;
    if (s.badSong !== null) {
      el.song.hidden = true;
      el.results.replaceChildren();
      showMessage(el.message, `잘못된 곡 번호입니다 · invalid song id: ${s.badSong}`, "error");
      rendered();
      return;
    }
    if (s.song === null && s.tag === null) {
      el.song.hidden = true;
      el.results.replaceChildren();
      document.title = "Mugle · 음악 추천";
      showMessage(el.message, apiBase ? "곡을 검색해서 고르세요 · search for a song and pick it" : el.message.textContent);
      rendered();
      return;
    }
    if (!apiBase) return;
    showMessage(el.message, "불러오는 중… · loading…");
    el.results.setAttribute("aria-busy", "true");
    const methods = s.method === "compare" ? COMPARE : [s.method];
    const bySong = s.song !== null;
    let answers;
    try {
      answers = await Promise.all(methods.map((m) => fetchList(s, m)));
    } catch (err) {
      if (seq !== loadSeq) return;
      el.results.removeAttribute("aria-busy");
      el.song.hidden = true;
      el.results.replaceChildren();
      let text = errorText(err, "추천 · recommend");
      if (err instanceof ApiError && err.status === 404) {
        text = bySong ? `곡 ${s.song}을(를) 찾을 수 없습니다 · unknown song ${s.song}`
          : `상황 “${s.tag}”을(를) 찾을 수 없습니다 · unknown situation (tag) “${s.tag}”`;
      }
      showMessage(el.message, text, "error");
      rendered();
      return;
    }
    if (seq !== loadSeq) return;
    el.results.removeAttribute("aria-busy");
    showMessage(el.message, "");
    if (bySong) showSong(answers[0].song);
    else showTag(answers[0].tag);
    if (s.method === "compare") {
      el.results.replaceChildren(
        h("h2", { text: "방식 비교 · methods side by side" }),
        h("div", { class: "compare" }, answers.map((a, i) =>
          h("section", { class: "col", "data-method": methods[i] },
            h("h3", { text: methodLabel(methods[i]) }), recList(a.recommendations, true, bySong)))));
    } else {
      el.results.replaceChildren(
        h("h2", { text: `추천 · recommendations (${methodLabel(s.method)})` }),
        recList(answers[0].recommendations, false, bySong));
    }
    if (!bySong) {
      rendered();
      return;
    }
    if (!el.mapModel.dataset.touched) {
      el.mapModel.value = ["music2vec", "tcae"].includes(s.method) ? s.method : "cel";
    }
    rendered();
    drawMel(s.song, seq);
    drawMap(s.song, seq);
  }

  el.mapModel.addEventListener("change", () => { el.mapModel.dataset.touched = "1"; });

  // -- pictures -----------------------------------------------------------------------------------

  // A perceptual dark-to-bright palette (close to "magma"), so loud bins read as bright.
  const PALETTE = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
  const LUT = (() => {
    const lut = new Uint8ClampedArray(256 * 3);
    for (let v = 0; v < 256; v++) {
      const t = (v / 255) * (PALETTE.length - 1);
      const i = Math.min(PALETTE.length - 2, Math.floor(t));
      const f = t - i;
      for (let c = 0; c < 3; c++) lut[v * 3 + c] = PALETTE[i][c] + (PALETTE[i + 1][c] - PALETTE[i][c]) * f;
    }
    return lut;
  })();

  /** Paint {bands, frames, values} (row-major, band 0 = lowest) with low bands at the bottom. */
  function paintMel(canvas, mel) {
    const { bands, frames, values } = mel;
    if (!bands || !frames || !values || values.length !== bands * frames) return false;
    canvas.width = frames;
    canvas.height = bands;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(frames, bands);
    for (let b = 0; b < bands; b++) {
      const y = bands - 1 - b;
      for (let f = 0; f < frames; f++) {
        const v = values[b * frames + f] & 255;
        const o = (y * frames + f) * 4;
        img.data[o] = LUT[v * 3];
        img.data[o + 1] = LUT[v * 3 + 1];
        img.data[o + 2] = LUT[v * 3 + 2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return true;
  }

  async function drawMel(songId, seq) {
    try {
      const mel = await api(`songs/${songId}/mel`);
      if (seq !== loadSeq) return;
      el.melFig.hidden = !paintMel(el.mel, mel);
    } catch {
      // no thumbnail for this song (no audio, or none precomputed): the picture is simply left out
      if (seq === loadSeq) el.melFig.hidden = true;
    }
  }

  async function drawMap(songId, seq) {
    const model = el.mapModel.value;
    let data;
    try {
      data = await api(`songs/${songId}/map?${new URLSearchParams({ model, k: "15" })}`);
    } catch (err) {
      if (seq !== loadSeq) return;
      mapPoints = [];
      if (err instanceof ApiError && err.status === 404) {
        // no vector for this song in this model: keep the figure so another model can be picked
        el.mapFig.hidden = false;
        clearCanvas(el.map);
        el.mapCaption.textContent = `${MODEL_LABEL[model]}: ${err.message}`;
      } else {
        el.mapFig.hidden = true;
      }
      return;
    }
    if (seq !== loadSeq) return;
    el.mapFig.hidden = false;
    paintMap(el.map, data);
    const ev = data.explained ? ` · PCA ${(100 * (data.explained[0] + data.explained[1])).toFixed(0)}%` : "";
    el.mapCaption.textContent = `${MODEL_LABEL[model]} 공간의 이웃 ${data.points.length - 1}곡${ev} · 점을 누르면 이동 · click a dot to recommend from it`;
    el.map.setAttribute("aria-label", `${MODEL_LABEL[model]} map: ` + data.points.map((p) => p.title).join(", "));
  }

  function clearCanvas(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
  }

  function paintMap(canvas, data) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 360;
    const hgt = canvas.clientHeight || 260;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const pts = data.points;
    const xs = pts.map((p) => p.x);
    const ys = pts.map((p) => p.y);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = 28;
    const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
    const sy = (y) => hgt - pad - ((y - y0) / (y1 - y0 || 1)) * (hgt - 2 * pad);
    const styles = getComputedStyle(document.documentElement);
    const accent = styles.getPropertyValue("--accent").trim() || "#d33";
    const ink = styles.getPropertyValue("--ink").trim() || "#222";
    const gem = styles.getPropertyValue("--gem").trim() || "#0a7";
    mapPoints = [];
    ctx.font = "11px system-ui, sans-serif";
    // lines from the song to its neighbours first, so dots draw on top
    const self = pts.find((p) => p.self) || pts[0];
    ctx.strokeStyle = "rgba(127,127,127,0.25)";
    for (const p of pts) {
      if (p === self) continue;
      ctx.beginPath();
      ctx.moveTo(sx(self.x), sy(self.y));
      ctx.lineTo(sx(p.x), sy(p.y));
      ctx.stroke();
    }
    pts.forEach((p, i) => {
      const x = sx(p.x);
      const y = sy(p.y);
      ctx.beginPath();
      ctx.arc(x, y, p.self ? 7 : 4.5, 0, 2 * Math.PI);
      ctx.fillStyle = p.self ? accent : isGem(p) ? gem : ink;
      ctx.fill();
      if (p.self || i <= 6) {
        ctx.fillStyle = ink;
        const label = p.title.length > 14 ? p.title.slice(0, 13) + "…" : p.title;
        ctx.fillText(label, Math.min(x + 8, w - ctx.measureText(label).width - 2), y - 6);
      }
      mapPoints.push({ x, y, song_id: p.song_id, title: p.title });
    });
  }

  el.map.addEventListener("click", (ev) => {
    const r = el.map.getBoundingClientRect();
    const x = ev.clientX - r.left;
    const y = ev.clientY - r.top;
    let best = null;
    let bestD = 14 * 14;
    for (const p of mapPoints) {
      const d = (p.x - x) ** 2 + (p.y - y) ** 2;
      if (d < bestD) { best = p; bestD = d; }
    }
    if (best && String(best.song_id) !== readState().song) navigate({ song: String(best.song_id), neg: [] });
  });

  // -- upload -------------------------------------------------------------------------------------

  async function upload(file) {
    if (!file) {
      showMessage(el.uploadMsg, "파일을 고르세요 · choose a file first", "error");
      return;
    }
    const fd = new FormData();
    fd.append("file", file, file.name);
    fd.append("method", el.uploadMethod.value);
    showMessage(el.uploadMsg, `${file.name} 분석 중… · analysing…`);
    el.uploadResults.replaceChildren();
    el.uploadMelFig.hidden = true;
    try {
      const params = new URLSearchParams({ method: el.uploadMethod.value, k: String(K) });
      const novelty = Number.parseFloat(el.novelty.value) || 0;
      if (novelty > 0) params.set("novelty", String(novelty));
      const data = await api(`recommend/audio?${params}`, { method: "POST", body: fd, timeout: 120000 });
      const recs = data.recommendations || [];
      const clip = data.song || {};
      const span = Array.isArray(clip.excerpt) ? ` (${clip.excerpt[0]}–${clip.excerpt[1]} s)` : "";
      showMessage(el.uploadMsg, recs.length ? `${file.name}${span}: ${recs.length}곡 추천 · recommendations` :
        `${file.name}: 추천할 곡이 없습니다 · no recommendations`);
      el.uploadResults.replaceChildren(...recs.map((r) => card(r)));
      if (data.mel && typeof data.mel === "object") el.uploadMelFig.hidden = !paintMel(el.uploadMel, data.mel);
    } catch (err) {
      showMessage(el.uploadMsg, errorText(err, "업로드 · upload"), "error");
    }
  }

  el.uploadForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    upload(el.uploadFile.files[0]);
  });
  for (const name of ["dragenter", "dragover"]) {
    el.drop.addEventListener(name, (ev) => { ev.preventDefault(); el.drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    el.drop.addEventListener(name, () => el.drop.classList.remove("over"));
  }
  el.drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const file = ev.dataTransfer && ev.dataTransfer.files[0];
    if (!file) return;
    const dt = new DataTransfer();
    dt.items.add(file);
    el.uploadFile.files = dt.files;
    upload(file);
  });

  // -- start ----------------------------------------------------------------------------------------

  async function start() {
    syncControls(readState());
    showMessage(el.message, "API 연결 중… · connecting…");
    const found = await findApi();
    if (!found) {
      showMessage(el.message, "API에 연결할 수 없습니다. 서버가 실행 중인지 확인하세요 · cannot reach the API; is the server running?", "error");
      document.body.dataset.ready = "error";
      return;
    }
    apiBase = found.base;
    const hl = found.health;
    setMethods(Array.isArray(hl.methods) ? hl.methods : []);
    el.apiInfo.textContent = `버전 · version ${hl.version} · ${hl.songs}곡 · songs`;
    try {
      const stats = await api("visual/stats");
      gemThreshold = typeof stats.gem_threshold === "number" ? stats.gem_threshold : null;
    } catch {
      gemThreshold = null; // older server without the visual routes: no gem marker
    }
    try {
      const data = await api("genres");
      const chosen = el.genre.value;
      el.genre.replaceChildren(h("option", { value: "", text: "모든 장르 · all genres" }),
        ...data.genres.map((g) => h("option", { value: g.name, text: `${g.name} (${g.songs})` })));
      el.genre.value = chosen;
    } catch {
      // an older server without GET /genres: the filter keeps its "all genres" entry only
    }
    document.body.dataset.ready = "1";
    await render();
  }

  start();
})();
