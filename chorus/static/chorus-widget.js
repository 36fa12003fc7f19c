// Chorus additions to the embedded chat widget (served at /chorus/static/chorus-widget.js).
// Loaded by the host page after Chainlit's copilot script (see `chorus widget snippet`): inside
// the widget, as on the Chorus page, it writes each agent's name above its messages and shows
// the chat's warnings (a broken plugin, memory unavailable) above the composer.
(function () {
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

  // The server sends the warnings as a window message when the chat opens (a chat message would
  // hide the team's starters, which Chainlit shows only while the chat is empty). The widget posts
  // it to this page's window; only messages from this window itself are believed.
  let warnings = [];
  window.addEventListener("message", function (event) {
    const data = event.data;
    if (event.source !== window || !data || data.chorus !== "notices" || !Array.isArray(data.notices)) return;
    warnings = data.notices.filter(function (n) { return n && typeof n.text === "string"; });
    const root = window.cl_shadowRootElement;
    const shown = root && root.querySelector("#chorus-warnings");
    if (shown) shown.remove();
    if (root) showWarnings(root);
  });

  function showWarnings(root) {
    const composer = root.querySelector("#message-composer");
    let box = root.querySelector("#chorus-warnings");
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
    if (box.nextElementSibling !== composer) composer.parentElement.insertBefore(box, composer);
  }

  function update(root) {
    labelAuthors(root);
    showWarnings(root);
  }

  let observed = null;
  function watch() {
    const root = window.cl_shadowRootElement;  // the widget's content, inside its shadow root
    if (!root || root === observed) return;
    observed = root;
    new MutationObserver(function () { update(root); }).observe(root, { childList: true, subtree: true });
    update(root);
  }
  new MutationObserver(watch).observe(document.documentElement, { childList: true, subtree: true });
  watch();
})();
