// Chorus additions to the embedded chat widget (served at /chorus/static/chorus-widget.js).
// Loaded by the host page after Chainlit's copilot script (see `chorus widget snippet`): it
// writes each agent's name above its messages inside the widget, as the Chorus page does.
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
  let observed = null;
  function watch() {
    const root = window.cl_shadowRootElement;  // the widget's content, inside its shadow root
    if (!root || root === observed) return;
    observed = root;
    new MutationObserver(function () { labelAuthors(root); }).observe(root, { childList: true, subtree: true });
    labelAuthors(root);
  }
  new MutationObserver(watch).observe(document.documentElement, { childList: true, subtree: true });
  watch();
})();
