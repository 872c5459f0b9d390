// The assistant's answers as markdown (headings, lists, code, links), sanitised: a model's
// output may contain HTML, and none of it may run script on this page.

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";

const parser = new Marked({ gfm: true, breaks: false, async: false });

// Links the model writes open elsewhere, without handing this page to them.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

export function renderMarkdown(target, text) {
  const html = parser.parse(text || "");
  target.replaceChildren(DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true }));
  target.dataset.markdown = text || "";
}
