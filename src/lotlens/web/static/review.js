// Review queue keys: j/k move the selection, a accepts, r rejects, l focuses the relabel list
// (Enter then submits it), ? lists them. The single-key shortcuts can be switched off (WCAG 2.1.4);
// the choice is kept in this browser. Plain forms underneath: without this script every button works.
(function () {
  "use strict";
  const toggle = document.querySelector("[data-testid=shortcuts-toggle]");
  const overlay = document.querySelector("[data-testid=shortcuts]");
  const opener = document.querySelector("[data-testid=shortcuts-open]");
  const on = () => localStorage.getItem("lotlens-shortcuts") !== "off";
  if (toggle) {
    toggle.checked = on();
    toggle.addEventListener("change", () => localStorage.setItem("lotlens-shortcuts", toggle.checked ? "on" : "off"));
  }
  if (opener && overlay) opener.addEventListener("click", () => overlay.showModal());
  const items = Array.from(document.querySelectorAll("[data-testid=review-item]"));
  if (!items.length) {
    document.addEventListener("keydown", (e) => {
      if (e.key === "?" && on() && overlay && !overlay.open && !/INPUT|SELECT|TEXTAREA/.test(e.target.tagName || "")) overlay.showModal();
    });
    return;
  }
  let current = 0;
  const stored = sessionStorage.getItem("lotlens-review-position");
  if (stored !== null) current = Math.min(items.length - 1, Math.max(0, parseInt(stored, 10) || 0));

  function select(i) {
    items[current].classList.remove("selected");
    current = Math.min(items.length - 1, Math.max(0, i));
    const el = items[current];
    el.classList.add("selected");
    el.scrollIntoView({ block: "nearest" });
    el.focus({ preventScroll: true });
  }

  function press(key) {
    const target = items[current].querySelector(`[data-key="${key}"]`);
    if (!target) return;
    if (target.tagName === "SELECT") { target.focus(); return; }
    sessionStorage.setItem("lotlens-review-position", String(current));
    target.click();
  }

  items.forEach((el, i) => el.addEventListener("click", () => select(i)));
  document.querySelectorAll(".review-item select").forEach((sel) =>
    sel.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); sessionStorage.setItem("lotlens-review-position", String(current)); sel.form.requestSubmit(); }
      if (e.key === "Escape") { e.preventDefault(); items[current].focus(); }
    })
  );
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (!on() || (overlay && overlay.open)) return;
    if (e.key === "?") { e.preventDefault(); overlay.showModal(); return; }
    if (e.key === "j") { e.preventDefault(); select(current + 1); }
    else if (e.key === "k") { e.preventDefault(); select(current - 1); }
    else if (e.key === "a" || e.key === "r" || e.key === "l") { e.preventDefault(); press(e.key); }
  });
  select(current);
})();
