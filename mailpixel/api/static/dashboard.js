"use strict";
// mailpixel dashboard: reads only the query API (/api/...), draws with hand-made SVG.
// Everything shown is set as text (never as HTML): ids and user agents come from the pixel.
(() => {
  const KEY = "mailpixel.apiKey";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (selector) => document.querySelector(selector);
  const state = { key: sessionStorage.getItem(KEY) || "", loading: 0 };

  class AuthError extends Error {}

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const number = new Intl.NumberFormat("en");
  const fmt = (n) => number.format(n || 0);
  const percent = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1 });
  // A click-to-open rate: null (no human opener yet) is shown as a dash, never as 0 %.
  const pct = (rate) => (typeof rate === "number" ? percent.format(rate) : "–");
  const when = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") : "–");
  let regionNames = null;
  try { regionNames = new Intl.DisplayNames(["en"], { type: "region" }); } catch (_) { regionNames = null; }
  function countryName(code) {
    if (!/^[A-Z]{2}$/.test(code)) return code;
    let name = code;
    try { name = (regionNames && regionNames.of(code)) || code; } catch (_) { name = code; }
    return name === code ? code : `${name} · ${code}`;
  }
  const reasonNames = { apple_mpp: "Apple Mail Privacy Protection", security_scanner: "Security scanner", bot: "Bot" };

  function status(text) { $("#status").textContent = text || ""; }

  async function api(path, params) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const response = await fetch(url, { headers: { Authorization: `Bearer ${state.key}` }, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) throw new AuthError(body.message || "The API key was refused.");
    if (!response.ok) throw new Error(body.message || `${response.status} ${response.statusText}`);
    return body;
  }

  // Every ID is one encoded segment, `/` included (`%2F`): the API takes any ID the pixel accepts.
  // But `.` and `..` are dot segments a browser resolves away (`%2E` too, by the URL standard):
  // those go as a query parameter, a form the API also takes (`/api/emails/stats?email_id=..`).
  const emailApi = (id, what, params) => (id === "." || id === ".."
    ? api(`/api/emails/${what}`, { ...params, email_id: id })
    : api(`/api/emails/${encodeURIComponent(id)}/${what}`, params));

  // One failed request fails only its own panel: the others are drawn, and the status line says
  // what could not load. A refused key still stops everything (the login form comes back).
  async function settled(requests, failures) {
    const results = await Promise.allSettled(requests);
    for (const result of results) {
      if (result.status === "rejected" && result.reason instanceof AuthError) throw result.reason;
      if (result.status === "rejected") failures.push(result.reason.message || String(result.reason));
    }
    return results.map((result) => (result.status === "fulfilled" ? result.value : null));
  }

  function isoDay(date) { return date.toISOString().slice(0, 10); }
  function period() {
    const days = Number($("#days").value) || 30;
    const until = new Date();
    const since = new Date(until.getTime() - (days - 1) * 86400000);
    return { since: isoDay(since), until: isoDay(until), days };
  }

  function showLogin(message) {
    $("#main").hidden = true;
    $("#pick").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = message || "";
    $("#key").focus();
  }

  function showMain() {
    $("#login").hidden = true;
    $("#pick").hidden = false;
    $("#main").hidden = false;
  }

  function setMetric(name, value) {
    const node = document.querySelector(`[data-metric="${name}"]`);
    node.textContent = typeof value === "number" ? fmt(value) : value;
    if (typeof value === "number") node.dataset.value = String(value);
  }

  function setRate(name, rate, attribute = "data-metric") {
    const node = document.querySelector(`[${attribute}="${name}"]`);
    node.textContent = pct(rate);
    if (typeof rate === "number") node.dataset.value = String(rate);
    else delete node.dataset.value;
  }

  // One email's rates as the API gives them: each value beside the formula it is computed by,
  // and the recipient counts they divide by (a dash while none are recorded).
  function showRates(stats) {
    const rates = stats && stats.rates ? stats.rates : {};
    for (const node of document.querySelectorAll("[data-rate]")) {
      const rate = rates[node.dataset.rate] || { value: null, formula: "" };
      setRate(node.dataset.rate, rate.value, "data-rate");
      document.querySelector(`[data-formula="${node.dataset.rate}"]`).textContent = rate.formula;
    }
    const recipients = stats ? stats.recipients : null;
    $("#recipients").textContent = recipients
      ? `sent to ${fmt(recipients.sent)} · tracked for opens ${fmt(recipients.tracked_opens)} · for clicks ${fmt(recipients.tracked_clicks)}`
      : "no recipient counts recorded (mailpixel recipients, or PUT /api/emails/{id}/recipients)";
  }

  // Unique human clickers over unique human openers, as the API computes it (rounded to 4
  // places); null without a human opener.
  function rateOf(clickers, openers) {
    return openers ? Math.round((10000 * clickers) / openers) / 10000 : null;
  }

  function niceMax(value) {
    if (value <= 4) return 4;
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
    return 10 * magnitude;
  }

  function drawTimeline(days) {
    const box = $("#timeline");
    box.replaceChildren();
    const width = Math.max(box.clientWidth || 900, 320);
    const height = 240;
    const pad = { left: 40, right: 8, top: 10, bottom: 26 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const top = niceMax(Math.max(0, ...days.map((d) => d.opens || 0)));
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height });
    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 4; i += 1) {
      const y = pad.top + plotH - (plotH * i) / 4;
      grid.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y }));
      grid.append(svg("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, fmt((top * i) / 4)));
    }
    chart.append(grid);
    const slot = plotW / Math.max(days.length, 1);
    const barW = Math.max(1, Math.min(28, slot * 0.7));
    const labelEvery = Math.ceil(days.length / Math.max(1, Math.floor(plotW / 56)));
    days.forEach((day, i) => {
      const x = pad.left + slot * i + (slot - barW) / 2;
      const human = day.human_opens || 0;
      const machine = day.machine_opens || 0;
      const hH = (plotH * human) / top;
      const mH = (plotH * machine) / top;
      const base = pad.top + plotH;
      const group = svg("g", { "data-date": day.date });
      group.append(svg("title", {}, `${day.date}: ${fmt(human)} human, ${fmt(machine)} machine`));
      if (human) group.append(svg("rect", { class: "human", x, y: base - hH, width: barW, height: hH, rx: 2 }));
      if (machine) group.append(svg("rect", { class: "machine", x, y: base - hH - mH, width: barW, height: mH, rx: 2 }));
      group.append(svg("rect", { x: pad.left + slot * i, y: pad.top, width: slot, height: plotH, fill: "transparent" }));
      chart.append(group);
      if (i % labelEvery === 0) {
        chart.append(svg("text", { x: x + barW / 2, y: height - 8, "text-anchor": "middle" }, day.date.slice(5)));
      }
    });
    box.append(chart);
  }

  function drawBars(id, counts, label, extraClass) {
    const box = document.getElementById(id);
    box.replaceChildren();
    box.className = `bars ${extraClass || ""}`.trim();
    const entries = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    if (!entries.length) {
      box.append(el("p", { class: "empty", text: "Nothing yet" }));
      return;
    }
    const shown = entries.slice(0, 10);
    const rest = entries.slice(10).reduce((sum, [, n]) => sum + n, 0);
    if (rest) shown.push(["Others", rest]);
    const most = Math.max(...shown.map(([, n]) => n));
    for (const [name, count] of shown) {
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = `${(100 * count) / most}%`;
      const text = label ? label(name) : name;
      box.append(el("div", { class: "bar-row", "data-name": name, title: `${text}: ${fmt(count)}` },
        el("span", { class: "bar-name", text }), el("div", { class: "bar-track" }, fill),
        el("span", { class: "bar-count", text: fmt(count) })));
    }
  }

  function verdict(open) {
    if (open.machine_open === true) {
      return el("span", { class: "tag machine", text: `Machine · ${reasonNames[open.machine_reason] || open.machine_reason || "other"}` });
    }
    if (open.enriched_at === undefined) return el("span", { class: "tag", text: "Pending" });
    return el("span", { class: "tag human", text: open.proxy ? `Human · via ${open.proxy}` : "Human" });
  }

  function where(open) {
    const geo = open.geo || {};
    if (open.proxy) return `${open.proxy} proxy`;
    const parts = [geo.city, geo.country ? countryName(geo.country) : ""].filter(Boolean);
    return parts.join(", ") || "–";
  }

  function client(open) {
    const c = open.client || {};
    return [c.name, c.os].filter(Boolean).join(" · ") || "–";
  }

  function drawLatest(opens) {
    const body = $("#latest tbody");
    body.replaceChildren();
    if (!opens.length) {
      body.append(el("tr", {}, el("td", { class: "empty", colspan: "6", text: "No opens in this period" })));
      return;
    }
    for (const open of opens) {
      body.append(el("tr", { "data-request-id": open.request_id || "" },
        el("td", { text: when(open.opened_at) }),
        el("td", { class: "id", text: open.email_id || "", title: open.email_id || "" }),
        el("td", { class: "id", text: open.user_id || "–" }),
        el("td", { text: client(open) }),
        el("td", {}, verdict(open)),
        el("td", { text: where(open) })));
    }
  }

  // Clicks per destination of one email. URLs are the sender's text: set as text, never as
  // HTML and never as a link (a stored URL is not proof it is a safe one).
  function drawLinks(links) {
    const body = $("#links tbody");
    body.replaceChildren();
    if (!links || !links.length) {
      const text = links ? "No clicks yet" : "Could not load the links";
      body.append(el("tr", {}, el("td", { class: "empty", colspan: "3", text })));
      return;
    }
    for (const link of links) {
      body.append(el("tr", { "data-url": link.url },
        el("td", { class: "url", text: link.url, title: link.url }),
        el("td", { class: "num human-clicks", "data-value": String(link.human_clicks), text: fmt(link.human_clicks) }),
        el("td", { class: "num clicks", "data-value": String(link.clicks), text: fmt(link.clicks) })));
    }
  }

  function drawRecent(emails) {
    const body = $("#recent tbody");
    body.replaceChildren();
    if (!emails.length) {
      body.append(el("tr", {}, el("td", { class: "empty", colspan: "8", text: "No opens in this period" })));
    }
    for (const email of emails) {
      const rate = email.click_to_open_rate;
      const openRate = email.rates ? email.rates.open_rate.value : null;
      const row = el("tr", { "data-email-id": email.email_id },
        el("td", { class: "id", text: email.email_id, title: email.email_id }),
        el("td", { class: "num", text: fmt(email.opens) }),
        el("td", { class: "num", text: fmt(email.human_opens) }),
        el("td", { class: "num", text: fmt(email.unique_human_openers) }),
        el("td", { class: "num clicks", "data-value": String(email.clicks || 0), text: fmt(email.clicks) }),
        el("td", { class: "num rate", "data-value": typeof rate === "number" ? String(rate) : "", text: pct(rate) }),
        el("td", { class: "num open-rate", "data-value": typeof openRate === "number" ? String(openRate) : "", text: pct(openRate) }),
        el("td", { text: when(email.last_open_at) }));
      row.addEventListener("click", () => { choose(email.email_id); });
      body.append(row);
    }
  }

  function fillPicker(emails, selected) {
    const select = $("#email");
    const ids = emails.map((e) => e.email_id);
    if (selected && !ids.includes(selected)) ids.unshift(selected);
    select.replaceChildren(el("option", { value: "", text: "All recent emails" }),
      ...ids.map((id) => el("option", { value: id, text: id })));
    select.value = selected || "";
  }

  function choose(emailId) {
    const params = new URLSearchParams({ days: $("#days").value });
    if (emailId) params.set("email", emailId);
    location.hash = params.toString();
  }

  function fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const days = params.get("days");
    if (days && [...$("#days").options].some((o) => o.value === days)) $("#days").value = days;
    return params.get("email") || "";
  }

  async function latestAcross(emails, failures) {
    const pages = await settled(emails.slice(0, 5).map((e) => emailApi(e.email_id, "opens", { order: "desc", limit: 20 })), failures);
    return pages.filter(Boolean).flatMap((p) => p.items).sort((a, b) => (a.opened_at < b.opened_at ? 1 : -1)).slice(0, 20);
  }

  function showFigures(figures) {
    const counts = ["opens", "human_opens", "machine_opens", "unique_openers", "unique_human_openers",
      "clicks", "human_clicks", "unique_human_clickers"];
    for (const name of counts) setMetric(name, figures[name] || 0);
    setMetric("span", figures.first_open_at ? `${when(figures.first_open_at)} → ${when(figures.last_open_at)}` : "–");
    setMetric("first_human_open", when(figures.first_human_open_at));
    setRate("click_to_open_rate", figures.click_to_open_rate);
    drawBars("clients", figures.clients);
    drawBars("countries", figures.countries, countryName);
    drawBars("reasons", figures.machine_opens_by_reason, (r) => reasonNames[r] || r, "machine");
    drawBars("proxies", figures.proxies);
  }

  async function load() {
    if (!state.key) { showLogin(); return; }
    const ticket = ++state.loading;
    const emailId = fromHash();
    const range = period();
    status("Loading…");
    const failures = [];
    try {
      const recent = await api("/api/emails", { days: range.days, limit: 100 });
      if (ticket !== state.loading) return;
      showMain();
      fillPicker(recent.emails, emailId);
      $("#recent-panel").hidden = Boolean(emailId);
      $("#links-panel").hidden = !emailId;
      $("#rates-panel").hidden = !emailId;
      if (emailId) {
        const [stats, daily, opens] = await settled([
          emailApi(emailId, "stats"),
          emailApi(emailId, "daily", { since: range.since, until: range.until }),
          emailApi(emailId, "opens", { order: "desc", limit: 20 }),
        ], failures);
        if (ticket !== state.loading) return;
        $("#title").textContent = emailId;
        $("#subtitle").textContent = "Figures for the whole life of this email; the chart covers the chosen period.";
        showFigures(stats || {});
        drawLinks(stats ? stats.links || [] : null);
        showRates(stats);
        drawTimeline(daily ? daily.days : []);
        drawLatest(opens ? opens.items : []);
      } else {
        const [daily, latest] = await settled([
          api("/api/daily", { since: range.since, until: range.until }),
          latestAcross(recent.emails, failures),
        ], failures);
        if (ticket !== state.loading) return;
        const sum = (field) => recent.emails.reduce((total, e) => total + (e[field] || 0), 0);
        const earliest = (field) => recent.emails.map((e) => e[field]).filter(Boolean).sort()[0];
        const last = recent.emails.map((e) => e.last_open_at).filter(Boolean).sort().pop();
        $("#title").textContent = "All recent emails";
        $("#subtitle").textContent = `${fmt(recent.emails.length)} emails opened between ${range.since} and ${range.until}; ` +
          "opens and clicks are the period's; unique openers and clickers are summed over emails.";
        showFigures({ ...(daily ? daily.totals : {}), unique_openers: sum("unique_openers"),
          unique_human_openers: sum("unique_human_openers"), unique_human_clickers: sum("unique_human_clickers"),
          click_to_open_rate: rateOf(sum("unique_human_clickers"), sum("unique_human_openers")),
          first_open_at: earliest("first_open_at"), first_human_open_at: earliest("first_human_open_at"), last_open_at: last });
        drawTimeline(daily ? daily.days : []);
        drawRecent(recent.emails);
        drawLatest(latest || []);
      }
      const failed = failures.length ? ` · ${failures.length} part(s) could not load: ${failures[0]}` : "";
      status(`Updated ${new Date().toLocaleTimeString()}${failed}`);
      document.body.dataset.failures = String(failures.length);
      document.body.dataset.loaded = String(ticket);
    } catch (error) {
      if (error instanceof AuthError) {
        sessionStorage.removeItem(KEY);
        state.key = "";
        showLogin(error.message);
        status("");
      } else {
        status(`Could not load: ${error.message}`);
      }
    }
  }

  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("#key").value.trim();
    $("#key").value = "";
    if (state.key) sessionStorage.setItem(KEY, state.key);
    load();
  });
  $("#logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); state.key = ""; showLogin(); });
  $("#email").addEventListener("change", () => choose($("#email").value));
  $("#days").addEventListener("change", () => choose($("#email").value));
  $("#refresh").addEventListener("click", load);
  window.addEventListener("hashchange", load);
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(load, 250); });
  load();
})();
