// Review queue keys: j/k move the selection, a accepts, r rejects, l focuses the relabel list
// (Enter then submits it). Plain forms underneath: without this script every button still works.
(function () {
  "use strict";
  const items = Array.from(document.querySelectorAll("[data-testid=review-item]"));
  if (!items.length) return;
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
    if (e.key === "j") { e.preventDefault(); select(current + 1); }
    else if (e.key === "k") { e.preventDefault(); select(current - 1); }
    else if (e.key === "a" || e.key === "r" || e.key === "l") { e.preventDefault(); press(e.key); }
  });
  select(current);
})();
