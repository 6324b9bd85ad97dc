// Inventory: select cards (click, shift-click for a range, or every image matching the filter),
// fix them in one action, confirm the model's answer ("Looks right"), undo the last action.
// Saves go through fetch and swap the changed cards in place, so the page keeps its scroll
// position. Without this script each card's own form still saves (with a page reload).
(function () {
  "use strict";
  const bar = document.querySelector("[data-testid=bulk]");
  if (!bar) return;
  const status = document.querySelector("[data-testid=bulk-status]");
  const message = status.querySelector(".msg");
  const undoButton = status.querySelector("[data-testid=undo]");
  const csrf = bar.querySelector("input[name=csrf]").value;
  let anchor = null; // the last box clicked: a shift-click selects from it
  let allMatching = false;
  let lastFixes = [];

  const boxes = () => Array.from(document.querySelectorAll(".pick-box"));
  const selectedKeys = () => boxes().filter((b) => b.checked).map((b) => b.value);

  function refresh() {
    const n = allMatching ? Number(bar.dataset.total) : selectedKeys().length;
    bar.hidden = n === 0;
    bar.querySelector("[data-testid=bulk-count]").textContent = allMatching
      ? `all ${n} matching this filter selected`
      : `${n} selected`;
    document.querySelectorAll(".card").forEach((card) => {
      const box = card.querySelector(".pick-box");
      card.classList.toggle("picked", Boolean(box && box.checked));
    });
  }

  document.addEventListener("click", (e) => {
    const box = e.target.closest(".pick-box");
    if (!box) return;
    const all = boxes();
    const i = all.indexOf(box);
    if (e.shiftKey && anchor !== null && anchor !== i && anchor < all.length) {
      const [from, to] = anchor < i ? [anchor, i] : [i, anchor];
      for (let k = from; k <= to; k++) all[k].checked = box.checked;
    }
    anchor = i;
    allMatching = false;
    refresh();
  });

  async function post(url, pairs) {
    const body = new URLSearchParams([["csrf", csrf], ...pairs]);
    const res = await fetch(url, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!res.ok) {
      const page = new DOMParser().parseFromString(await res.text(), "text/html");
      const detail = page.querySelector("[data-testid=error-detail]");
      throw new Error(detail ? detail.textContent.trim() : `the server answered ${res.status}`);
    }
    return res.json();
  }

  function swap(cards) {
    const focused = document.activeElement && document.activeElement.closest(".card");
    const focusIndex = focused ? focused.dataset.index : null;
    const focusId = focused ? document.activeElement.dataset.testid : null;
    for (const [index, html] of Object.entries(cards)) {
      const old = document.querySelector(`.card[data-index="${CSS.escape(index)}"]`);
      if (!old) continue; // on another page of the listing
      const wasPicked = Boolean(old.querySelector(".pick-box:checked"));
      const template = document.createElement("template");
      template.innerHTML = html.trim();
      const fresh = template.content.firstElementChild;
      old.replaceWith(fresh);
      const box = fresh.querySelector(".pick-box");
      if (box) box.checked = wasPicked;
      if (index === focusIndex) {
        const again = (focusId && fresh.querySelector(`[data-testid="${focusId}"]`)) || fresh.querySelector("a, button, select");
        if (again) again.focus({ preventScroll: true });
      }
    }
  }

  function say(text, fixIds, ok) {
    status.hidden = false;
    status.className = ok ? "notice ok" : "notice error";
    message.textContent = text;
    lastFixes = fixIds || [];
    undoButton.hidden = lastFixes.length === 0;
  }

  async function save(keys, fields) {
    const pairs = keys === "all" ? [["all", "1"]] : keys.map((k) => ["keys", k]);
    pairs.push(["filter", bar.dataset.filter]);
    for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) pairs.push([k, v]);
    try {
      const out = await post(bar.dataset.action, pairs);
      swap(out.cards);
      say(out.message, out.fix_ids, true);
    } catch (err) {
      say(`Not saved: ${err.message}`, [], false);
    }
    refresh();
  }

  const targets = () => (allMatching ? "all" : selectedKeys());

  bar.querySelector("[data-testid=bulk-apply]").addEventListener("click", () => {
    const type = bar.querySelector("[data-testid=bulk-type]").value;
    const color = bar.querySelector("[data-testid=bulk-color]").value;
    const fields = { comment: bar.querySelector("[data-testid=bulk-comment]").value };
    if (type) fields.type = type;
    if (color !== "keep") fields.color = color;
    if (!fields.type && fields.color === undefined) {
      say("Choose a type or a color to set.", [], false);
      return;
    }
    save(targets(), fields);
  });
  bar.querySelector("[data-testid=bulk-confirm]").addEventListener("click", () =>
    save(targets(), { confirm: "1", comment: bar.querySelector("[data-testid=bulk-comment]").value })
  );
  const selectAll = document.querySelector("[data-testid=select-all-matching]");
  if (selectAll) selectAll.addEventListener("click", () => {
    allMatching = true;
    boxes().forEach((b) => { b.checked = true; });
    refresh();
  });
  bar.querySelector("[data-testid=bulk-clear]").addEventListener("click", () => {
    allMatching = false;
    boxes().forEach((b) => { b.checked = false; });
    refresh();
  });

  undoButton.addEventListener("click", async () => {
    try {
      const out = await post(bar.dataset.undo, lastFixes.map((id) => ["fix_ids", String(id)]));
      swap(out.cards);
      say(out.message, [], true);
    } catch (err) {
      say(`Not undone: ${err.message}`, lastFixes, false);
    }
  });

  // One card: its chips (the model's next best answer, "Looks right") and its own form.
  document.addEventListener("click", (e) => {
    const chip = e.target.closest(".chip");
    if (!chip) return;
    const key = chip.closest(".card").dataset.key;
    if (chip.classList.contains("confirm")) save([key], { confirm: "1" });
    else save([key], { [chip.dataset.field]: chip.dataset.value });
  });
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (!form.matches(".card form.fix")) return;
    e.preventDefault();
    const data = new FormData(form);
    save([data.get("image_key")], {
      type: data.get("type"),
      color: data.get("color"),
      scope: data.get("scope") || "advertiser",
      comment: data.get("comment") || "",
    });
  });
  refresh();
})();
