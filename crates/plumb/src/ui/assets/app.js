// plumb ui: keeps the page live (server-sent events, then a fetch of the page's content),
// filters the overview, and asks for confirmation before an action. No framework, no build.
"use strict";

(function () {
  const live = () => document.getElementById("live");
  const status = () => document.getElementById("live-status");

  function setStatus(text, cls) {
    const el = status();
    if (!el) return;
    el.textContent = text;
    el.className = "chip " + cls;
  }

  // The overview's filter: rows and source sections whose data-filter text holds every word.
  function applyFilter() {
    const input = document.getElementById("filter");
    if (!input) return;
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    const matches = (el) => {
      const text = (el.dataset.filter || "").toLowerCase();
      return words.every((w) => text.includes(w));
    };
    for (const section of live().querySelectorAll("section.source")) {
      const rows = section.querySelectorAll("tr[data-filter]");
      let any = matches(section);
      for (const row of rows) {
        const show = words.length === 0 || any || matches(row);
        row.hidden = !show;
      }
      const anyRow = Array.from(rows).some((r) => !r.hidden && matches(r));
      section.hidden = words.length > 0 && !any && !anyRow;
    }
    for (const row of live().querySelectorAll("table.policies tr[data-filter]")) {
      row.hidden = words.length > 0 && !matches(row);
    }
  }

  // The version of the cluster the content shows (the server counts changes); the event
  // stream sends the current one when it connects and after every change.
  let shown = null;

  // Swaps in the page's current content, keeping open <details> and the focused element.
  let inFlight = false;
  let again = false;
  async function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      do {
        again = false;
        const response = await fetch(location.pathname + location.search, {
          headers: { "X-Plumb-Fragment": "1" },
          cache: "no-store",
        });
        if (!response.ok && response.status !== 404) break;
        const version = response.headers.get("X-Plumb-Version");
        const html = await response.text();
        if (version !== null) shown = version;
        const main = live();
        const open = Array.from(main.querySelectorAll("details[open]")).map((d) => d.id);
        const focused = document.activeElement && main.contains(document.activeElement)
          ? document.activeElement.id || null
          : null;
        main.innerHTML = html;
        for (const id of open) {
          const d = id && document.getElementById(id);
          if (d) d.open = true;
        }
        if (focused) {
          const f = document.getElementById(focused);
          if (f) f.focus();
        }
        applyFilter();
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      } while (again);
    } catch (e) {
      setStatus("Refresh failed", "bad");
    } finally {
      inFlight = false;
    }
  }

  function connect() {
    shown = document.body.dataset.version || null;
    const source = new EventSource("/events");
    source.addEventListener("open", () => setStatus("Live", "good"));
    // The first event after each (re)connection carries the current version: changes made
    // since the page was built, or while the stream was down, are fetched then.
    source.addEventListener("change", (event) => {
      if (event.data !== shown) refresh();
    });
    // EventSource reconnects by itself; say so meanwhile.
    source.addEventListener("error", () => setStatus("Reconnecting…", "progress"));
  }

  function notice(text) {
    const el = document.getElementById("notice");
    el.textContent = text;
  }

  function setupActions() {
    const dialog = document.getElementById("confirm");
    const form = dialog.querySelector("form");
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button.action");
      if (button) {
        for (const field of ["kind", "namespace", "name", "verb"]) {
          form.elements[field].value = button.dataset[field];
        }
        document.getElementById("confirm-title").textContent = button.textContent;
        document.getElementById("confirm-text").textContent = button.dataset.prompt;
        dialog.returnFocus = button.id || null;
        dialog.showModal();
        form.querySelector("button[type=submit]").focus();
      }
      if (event.target.closest("[data-close]")) dialog.close();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      dialog.close();
      try {
        const response = await fetch(form.action, {
          method: "POST",
          headers: { "X-Plumb-Action": "1" },
          body: new URLSearchParams(new FormData(form)),
        });
        notice(await response.text());
      } catch (e) {
        notice("The action could not be sent: " + e);
      }
      await refresh();
      // Back to the button that opened the dialog, for keyboard users, unless they moved on.
      const back = dialog.returnFocus && document.getElementById(dialog.returnFocus);
      const lost = !document.activeElement || document.activeElement === document.body;
      if (back && lost) back.focus();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("filter");
    if (input) input.addEventListener("input", applyFilter);
    setupActions();
    connect();
  });
})();
