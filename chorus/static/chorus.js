// Chorus additions to the Chainlit page (served at /chorus/static/chorus.js).
(function () {
  // 1. Each agent's name above its messages. Chainlit renders the author only as an avatar's
  //    alt text; in a team chat, who is speaking is the point.
  const PREFIX = "Avatar for ";
  function labelAuthors(root) {
    root.querySelectorAll("[data-step-type='assistant_message'] .ai-message").forEach(function (msg) {
      if (msg.querySelector(":scope .chorus-author")) return;
      const img = msg.querySelector("img[alt^='" + PREFIX + "']");
      const column = msg.querySelector(":scope > div.flex.flex-col");
      if (!img || !column) return;
      const name = img.getAttribute("alt").slice(PREFIX.length);
      const tag = document.createElement("div");
      tag.className = "chorus-author text-sm font-semibold text-muted-foreground";
      tag.setAttribute("data-author", name);
      tag.textContent = name;
      column.insertBefore(tag, column.firstChild);
    });
  }

  // 2. A banner above the message composer while the chosen team uses the offline model.
  //    (A chat message would hide Chainlit's starters, which only show on an empty chat.)
  let status = null;
  fetch("/chorus/status", { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (s) { status = s; update(); })
    .catch(function () {});

  function currentTeam() {
    const picker = document.getElementById("chat-profiles");
    const name = picker ? picker.textContent.trim() : "";
    return name || (status && status.default);
  }

  function showBanner() {
    if (!status) return;
    const composer = document.getElementById("message-composer");
    let banner = document.getElementById("chorus-model-banner");
    const offline = status.offline[currentTeam()] ?? status.offline[status.default];
    if (!composer || !offline) {
      if (banner) banner.remove();
      return;
    }
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "chorus-model-banner";
      banner.setAttribute("role", "status");
      banner.className = "text-xs text-muted-foreground rounded-md border px-3 py-1.5 mb-2";
      banner.textContent = "ℹ️ " + status.notice;
    }
    if (banner.nextElementSibling !== composer) composer.parentElement.insertBefore(banner, composer);
  }

  // 3. This chat's warnings (a broken plugin, memory unavailable), above the composer as well,
  //    for the same reason. The server sends them as a window message when the chat opens.
  let warnings = [];
  window.addEventListener("message", function (event) {
    const data = event.data;
    if (event.source !== window || !data || data.chorus !== "notices" || !Array.isArray(data.notices)) return;
    warnings = data.notices.filter(function (n) { return n && typeof n.text === "string"; });
    const shown = document.getElementById("chorus-warnings");
    if (shown) shown.remove();
    update();
  });

  function showWarnings() {
    const composer = document.getElementById("message-composer");
    let box = document.getElementById("chorus-warnings");
    if (!composer || !warnings.length) {
      if (box) box.remove();
      return;
    }
    if (!box) {
      box = document.createElement("div");
      box.id = "chorus-warnings";
      box.setAttribute("role", "alert");
      box.className = "text-xs rounded-md border px-3 py-1.5 mb-2";
      warnings.forEach(function (n) {
        const line = document.createElement("div");
        line.textContent = (n.level === "warning" ? "⚠️ " : "ℹ️ ") + n.text;
        box.appendChild(line);
      });
    }
    const banner = document.getElementById("chorus-model-banner");
    const next = banner && banner.parentElement === composer.parentElement ? banner : composer;
    if (box.nextElementSibling !== next) composer.parentElement.insertBefore(box, next);
  }

  // 4. The conversation on screen was deleted (here, in another tab, or its address was opened
  //    afterwards): the server says so with a window message. Reload as a new chat, which clears the
  //    screen, and say why above the composer until the user starts talking again.
  const DELETED_KEY = "chorus-deleted";
  let deletedNotice = false;
  try {
    deletedNotice = sessionStorage.getItem(DELETED_KEY) === "1";
    sessionStorage.removeItem(DELETED_KEY);
  } catch (e) {}
  window.addEventListener("message", function (event) {
    const data = event.data;
    if (event.source !== window || !data || data.chorus !== "deleted") return;
    try { sessionStorage.setItem(DELETED_KEY, "1"); } catch (e) {}
    window.location.replace("/");
  });

  function showDeleted() {
    const composer = document.getElementById("message-composer");
    let box = document.getElementById("chorus-deleted");
    if (deletedNotice && window.location.pathname !== "/") deletedNotice = false;  // a new conversation began
    if (!composer || !deletedNotice) {
      if (box) box.remove();
      return;
    }
    if (!box) {
      box = document.createElement("div");
      box.id = "chorus-deleted";
      box.setAttribute("role", "status");
      box.className = "text-xs rounded-md border px-3 py-1.5 mb-2";
      box.textContent = "ℹ️ That conversation was deleted: this is a new chat.";
    }
    const next = document.getElementById("chorus-warnings") || document.getElementById("chorus-model-banner");
    const before = next && next.parentElement === composer.parentElement ? next : composer;
    if (box.nextElementSibling !== before) composer.parentElement.insertBefore(box, before);
  }

  // The settings panel's provider key (chorus/web/personal.py) is typed like a password.
  function maskKeyField() {
    const field = document.getElementById("provider_key");
    if (field && field.tagName === "INPUT" && field.type !== "password") {
      field.type = "password";
      field.autocomplete = "off";
    }
  }

  function update() {
    maskKeyField();
    labelAuthors(document);
    showBanner();
    showWarnings();
    showDeleted();
  }
  new MutationObserver(update).observe(document.documentElement, { childList: true, subtree: true });
  update();
})();
