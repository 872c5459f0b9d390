// The web page (DESIGN section 13): projects, a conversation streaming live, versions, preview.
// Plain ES modules, no build step: the browser loads these files as the web app serves them.

import { client, words } from "./api.js";
import { renderMarkdown } from "./markdown.js";
import { follow } from "./stream.js";

const TOKEN_KEY = "appforge.token";
const RUNNING = ["PENDING", "STREAMING"];
const STATUS_WORDS = {
  PENDING: "waiting for a worker…",
  STREAMING: "working…",
  COMPLETE: "",
  FAILED: "failed",
  CANCELLED: "stopped",
};

const $ = (id) => document.getElementById(id);
const call = client(() => sessionStorage.getItem(TOKEN_KEY) || "");
const state = { project: null, running: null, followers: new Map(), versions: [], selected: null };
// Each version's checks (DESIGN section 16), by version id: the versions list does not carry
// them (section 12 pins its shape), so the page reads each version's fragment once.
const checksOf = new Map();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function pretty(value) {
  if (value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

// --- alerts -------------------------------------------------------------------------------

function showError(error) {
  if (error && error.status === 401) return signOut(words(error));
  alertText(typeof error === "string" ? error : words(error));
  if (error && !error.status) console.warn("request failed:", error.message);
}

function alertText(text) {
  $("alert-text").textContent = text;
  $("alert").hidden = false;
}

function clearAlert() {
  $("alert").hidden = true;
}

async function guarded(work) {
  try {
    return await work();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

// --- sign-in ------------------------------------------------------------------------------

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  params.delete("token");
  const rest = params.toString();
  // The token leaves the address bar and the history at once.
  history.replaceState(null, "", location.pathname + (rest ? `#${rest}` : ""));
}

async function signIn() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return signOut();
  const me = await guarded(() => call("GET", "/api/me"));
  if (!me) return;
  $("signin").hidden = true;
  $("workspace").hidden = false;
  $("sign-out").hidden = false;
  showCredits(me);
  await loadProjects();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("project");
  const project = wanted && state.projects.find((p) => p.id === wanted);
  if (project) await openProject(project);
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const follower of state.followers.values()) follower.close();
  state.followers.clear();
  state.project = null;
  $("workspace").hidden = true;
  $("sign-out").hidden = true;
  $("credits").hidden = true;
  $("signin").hidden = false;
  if (reason) alertText(reason);
  $("token-input").focus();
}

function showCredits(me) {
  const badge = $("credits");
  badge.textContent = `${me.credits} credit${me.credits === 1 ? "" : "s"} · ${me.plan}`;
  badge.title = "One credit per prompt; a failed run gives it back";
  badge.hidden = false;
}

async function refreshCredits() {
  const me = await call("GET", "/api/me").catch(() => null);
  if (me) showCredits(me);
}

// --- projects -----------------------------------------------------------------------------

async function loadProjects() {
  state.projects = await call("GET", "/api/projects");
  const list = $("projects");
  list.replaceChildren(
    ...state.projects.map((p) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "project",
            "data-testid": "project",
            "data-id": p.id,
            "aria-current": state.project && state.project.id === p.id ? "true" : null,
            onclick: () => guarded(() => openProject(p)),
          },
          el("span", { text: p.name }),
          el("small", { text: p.framework }),
        ),
      ),
    ),
  );
  $("projects-empty").hidden = state.projects.length > 0;
}

async function createProject(event) {
  event.preventDefault();
  const name = $("project-name").value.trim();
  if (!name) return alertText("Give the project a name first.");
  const project = await guarded(() =>
    call("POST", "/api/projects", { name, framework: $("framework").value }),
  );
  if (!project) return;
  $("project-name").value = "";
  clearAlert();
  state.projects = [project, ...(state.projects || [])];
  await openProject(project);
}

async function openProject(project) {
  for (const follower of state.followers.values()) follower.close();
  state.followers.clear();
  state.project = project;
  state.running = null;
  state.selected = null;
  history.replaceState(null, "", `${location.pathname}#project=${project.id}`);
  $("project-title").textContent = `${project.name} (${project.framework})`;
  $("prompt-form").hidden = false;
  $("preview-box").hidden = true;
  $("preview").removeAttribute("src");
  showPublished(project.published || null);
  await loadProjects();
  const messages = await call("GET", listing(project));
  $("messages").replaceChildren(...messages.map(messageView));
  showOlder(messages.prevCursor);
  emptyChat(messages.length === 0);
  for (const m of messages) if (m.role === "ASSISTANT" && RUNNING.includes(m.status)) watch(m.id);
  showRunning();
  await loadVersions({ select: "latest" });
  $("prompt").focus();
}

// A project's messages, with each fragment's paths rather than its files: the files pane loads
// a version's files when it is picked (README, API notes).
function listing(project) {
  return `/api/messages?projectId=${encodeURIComponent(project.id)}&fragmentFiles=paths`;
}

// The newest page of messages comes first; older ones load on request, above them.
function showOlder(cursor) {
  const button = $("older");
  button.hidden = !cursor;
  button.onclick = () =>
    guarded(async () => {
      const project = state.project;
      const older = await call("GET", `${listing(project)}&before=${encodeURIComponent(cursor)}`);
      if (state.project !== project) return;
      $("messages").prepend(...older.map(messageView));
      showOlder(older.prevCursor);
    });
}

function emptyChat(empty) {
  const note = $("chat-empty");
  note.hidden = !empty;
  note.textContent = empty
    ? "No messages yet: describe the app you want below (for example “Build a to-do list app”) and press Send."
    : "";
}

// --- messages -----------------------------------------------------------------------------

function messageView(m) {
  const node = el(
    "li",
    {
      class: `message ${m.role.toLowerCase()}`,
      "data-testid": "message",
      "data-id": m.id,
      "data-role": m.role,
      "data-status": m.status,
    },
    el(
      "div",
      { class: "message-head" },
      el("strong", { text: m.role === "USER" ? "You" : "Assistant" }),
      el("span", { class: "status", text: STATUS_WORDS[m.status] || "" }),
    ),
    el("div", { class: "content", "data-testid": "content" }),
    el("div", { class: "steps" }),
    el("p", { class: "message-error", text: m.error || "", hidden: !m.error }),
  );
  setContent(node, m.content || "");
  for (const step of m.toolCalls || []) addStep(node, step);
  return node;
}

// What the user typed is shown as typed; the assistant's answer is markdown.
function setContent(node, text) {
  const target = node.querySelector(".content");
  if (node.dataset.role === "USER") target.textContent = text;
  else renderMarkdown(target, text);
}

function contentText(node) {
  const target = node.querySelector(".content");
  return node.dataset.role === "USER" ? target.textContent : target.dataset.markdown || "";
}

function messageNode(id) {
  return document.querySelector(`[data-testid="message"][data-id="${CSS.escape(id)}"]`);
}

function setStatus(node, status) {
  node.dataset.status = status;
  node.querySelector(".status").textContent = STATUS_WORDS[status] || "";
}

function addStep(node, step) {
  const steps = node.querySelector(".steps");
  const existing = [...steps.children].find((d) => d.dataset.callId === step.id);
  if (existing) return existing;
  const details = el(
    "details",
    { class: "step", "data-testid": "step", "data-call-id": step.id },
    el("summary", {}, el("code", { text: step.name }), el("span", { class: "step-state" })),
    el("div", { class: "label", text: "arguments" }),
    el("pre", { class: "args", text: pretty(step.args) }),
    el("div", { class: "label", text: "result" }),
    el("pre", { class: "result", text: "" }),
  );
  steps.append(details);
  if (step.result !== undefined && step.result !== null) setResult(details, step.result);
  else details.querySelector(".step-state").textContent = " running…";
  return details;
}

function setResult(details, result) {
  details.querySelector(".result").textContent = pretty(result);
  const failed = result && typeof result === "object" && (result.error || result.ok === false);
  details.querySelector(".step-state").textContent = failed ? " error" : " done";
  details.classList.toggle("failed", Boolean(failed));
}

function watch(messageId) {
  if (state.followers.has(messageId)) return;
  state.running = messageId;
  const node = () => messageNode(messageId);
  const follower = follow(call, messageId, {
    reset: () => {
      const n = node();
      if (n) setContent(n, "");
    },
    reconnecting: () => node()?.classList.add("reconnecting"),
    failed: (error) => showError(error),
    event: (type, data) => {
      const n = node();
      if (!n) return;
      n.classList.remove("reconnecting");
      if (type === "status") setStatus(n, data.status);
      else if (type === "delta") setContent(n, contentText(n) + data.text);
      else if (type === "tool_call") addStep(n, { id: data.id, name: data.name, args: data.args });
      else if (type === "tool_result") {
        const step = [...n.querySelectorAll(".step")].find((d) => d.dataset.callId === data.id);
        if (step) setResult(step, data.result);
      } else if (type === "fragment" && data.fragment) {
        loadVersions({ select: data.fragment.id });
      } else if (type === "error") {
        const p = n.querySelector(".message-error");
        p.textContent = data.error;
        p.hidden = false;
      } else if (type === "done") finished(messageId, data.status);
    },
  });
  state.followers.set(messageId, follower);
  showRunning();
}

async function finished(messageId, status) {
  state.followers.delete(messageId);
  if (state.running === messageId) state.running = null;
  const n = messageNode(messageId);
  if (n) {
    setStatus(n, status);
    if (!contentText(n)) {
      // Nothing streamed (a run that failed before any text): the message says what happened.
      const m = await call("GET", `/api/messages/${encodeURIComponent(messageId)}`).catch(() => null);
      if (m) setContent(n, m.content);
    }
  }
  showRunning();
  refreshCredits();
  await loadVersions({ select: "latest-if-new" });
}

function showRunning() {
  $("stop").hidden = !state.running;
  $("prompt-form").querySelector('[data-testid="send"]').disabled = Boolean(state.running);
}

async function send(event) {
  event.preventDefault();
  if (!state.project) return;
  const text = $("prompt").value.trim();
  if (text.length < 3) return alertText("Write at least 3 characters: say what to build or change.");
  if (state.running) return alertText("Wait for the answer in progress, or press Stop.");
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const sent = await guarded(() =>
    call(
      "POST",
      "/api/messages",
      { message: text, projectId: state.project.id },
      { "Idempotency-Key": key },
    ),
  );
  if (!sent) return;
  clearAlert();
  $("prompt").value = "";
  emptyChat(false);
  $("messages").append(
    messageView(sent),
    messageView({ id: sent.messageId, role: "ASSISTANT", status: "PENDING", content: "" }),
  );
  messageNode(sent.messageId).scrollIntoView({ block: "nearest" });
  watch(sent.messageId);
  refreshCredits();
}

async function stop() {
  const id = state.running;
  if (!id) return;
  $("stop").disabled = true;
  try {
    await call("DELETE", `/api/messages/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error.status !== 409) showError(error); // 409: it ended meanwhile
  } finally {
    $("stop").disabled = false;
  }
}

// --- versions, preview, files -------------------------------------------------------------

async function loadVersions({ select }) {
  const project = state.project;
  if (!project) return;
  const versions = await call("GET", `/api/projects/${encodeURIComponent(project.id)}/versions`);
  if (state.project !== project) return;
  const known = new Set(state.versions.map((v) => v.id));
  state.versions = versions;
  renderVersions();
  readChecks(project, versions);
  if (!versions.length) return;
  const latest = versions[versions.length - 1];
  let wanted = null;
  if (select === "latest") wanted = latest;
  else if (select === "latest-if-new") wanted = known.has(latest.id) ? null : latest;
  else wanted = versions.find((v) => v.id === select) || null;
  if (wanted && (!state.selected || state.selected.id !== wanted.id)) await selectVersion(wanted);
}

// The checks of the versions not read yet, newest first; the list shows each as it arrives.
async function readChecks(project, versions) {
  for (const v of [...versions].reverse()) {
    if (checksOf.has(v.id)) continue;
    let fragment = null;
    try {
      fragment = await call("GET", `/api/messages/${encodeURIComponent(v.messageId)}/fragment`);
    } catch {
      continue; // shown without its checks; the next load tries again
    }
    if (state.project !== project) return;
    checksOf.set(v.id, (fragment && fragment.metadata && fragment.metadata.checks) || null);
    renderVersions();
  }
}

// A version's checks in words: passed, or failed with the first thing that failed; null when
// it was not checked.
function checksWords(checks) {
  if (!checks || checks.status === "skipped") return null;
  const build = checks.build || {};
  const render = checks.render || {};
  const first = [
    ...(build.errors || []),
    ...(render.pageErrors || []),
    ...(render.consoleErrors || []),
    ...(render.failedRequests || []),
    ...(render.blank ? ["the page is blank"] : []),
  ][0];
  if (checks.status === "passed") return "✓ checks passed";
  return `✗ checks failed: ${first || "see the run"}`;
}

function checksBadge(checks) {
  const words = checksWords(checks);
  if (!words) return null;
  return el("span", {
    class: "checks",
    "data-testid": "version-checks",
    "data-status": checks.status,
    title: words,
    text: words,
  });
}

function renderVersions() {
  const list = $("versions");
  list.replaceChildren(
    ...[...state.versions].reverse().map((v) => {
      const changes = v.changes || { added: [], modified: [], deleted: [] };
      const summary = `+${changes.added.length} ~${changes.modified.length} −${changes.deleted.length}`;
      return el(
        "li",
        {
          class: "version",
          "data-testid": "version",
          "data-id": v.id,
          "data-version": v.version,
          "aria-current": state.selected && state.selected.id === v.id ? "true" : null,
        },
        el(
          "button",
          {
            type: "button",
            class: "version-pick",
            onclick: () => guarded(() => selectVersion(v)),
            "aria-label": `Show version ${v.version}`,
          },
          el("strong", { text: `v${v.version}` }),
          rendered(checksOf.get(v.id))
            ? el("img", {
                class: "shot",
                "data-testid": "version-shot",
                alt: "",
                loading: "lazy",
                src: `/api/fragments/${encodeURIComponent(v.id)}/screenshot`,
              })
            : null,
          el("span", { text: v.title || "Untitled" }),
          checksBadge(checksOf.get(v.id)),
          el("small", { text: summary }),
        ),
        el("button", {
          type: "button",
          class: "restore",
          "data-testid": "restore",
          text: "Restore",
          "aria-label": `Restore version ${v.version}`,
          onclick: () => guarded(() => restore(v)),
        }),
      );
    }),
  );
  $("versions-empty").hidden = state.versions.length > 0;
}

async function selectVersion(version) {
  state.selected = version;
  renderVersions();
  const [fragment, diff] = await Promise.all([
    call("GET", `/api/messages/${encodeURIComponent(version.messageId)}/fragment`),
    call("GET", `/api/fragments/${encodeURIComponent(version.id)}/diff`),
  ]);
  if (state.selected !== version) return;
  $("preview-box").hidden = false;
  $("preview-title").textContent = `Preview of v${version.version}`;
  showChecks(version, fragment && fragment.metadata ? fragment.metadata.checks : null);
  if (fragment && fragment.sandboxUrl) showPreview(fragment.sandboxUrl);
  else await revive();
  renderFiles(fragment ? fragment.files || {} : {}, diff ? diff.files : []);
}

// Whether the render check ran, and so took the version's screenshot.
function rendered(checks) {
  return Boolean(checks && checks.render && checks.render.status !== "skipped");
}

// The selected version's checks as a badge over its preview.
function showChecks(version, checks) {
  if (!checksOf.has(version.id)) {
    checksOf.set(version.id, checks || null);
    renderVersions();
  }
  const badge = $("checks");
  const words = checksWords(checks);
  badge.hidden = !words;
  if (!words) return;
  badge.dataset.status = checks.status;
  badge.textContent = words;
}

function showPreview(url) {
  const frame = $("preview");
  frame.src = url;
  $("open-preview").href = url;
}

// A preview can expire (an E2B sandbox lives an hour): this brings it back, for any version.
async function revive() {
  const version = state.selected;
  if (!version) return;
  const live = await guarded(() =>
    call("POST", `/api/fragments/${encodeURIComponent(version.id)}/sandbox`),
  );
  if (live && state.selected === version) showPreview(live.sandboxUrl);
}

function renderFiles(files, changed) {
  const byPath = new Map(changed.map((f) => [f.path, f]));
  const paths = [...new Set([...Object.keys(files), ...byPath.keys()])].sort();
  const box = $("files");
  if (!paths.length) {
    box.replaceChildren(el("p", { class: "empty", text: "This version has no files." }));
    return;
  }
  box.replaceChildren(
    ...paths.map((path) => {
      const change = byPath.get(path);
      const details = el(
        "details",
        { class: "file", "data-testid": "file", "data-path": path },
        el(
          "summary",
          {},
          el("code", { text: path }),
          change ? el("span", { class: `change ${change.change}`, text: change.change }) : null,
        ),
      );
      if (change && change.diff) details.append(diffView(change.diff));
      if (path in files) details.append(el("pre", { class: "source", text: files[path] }));
      return details;
    }),
  );
}

function diffView(text) {
  const pre = el("pre", { class: "diff", "data-testid": "diff" });
  for (const line of text.split("\n")) {
    const head = line.startsWith("+++") || line.startsWith("---");
    const kind = head ? "head" : { "+": "add", "-": "del", "@": "hunk" }[line[0]] || "";
    pre.append(el("span", { class: kind, text: `${line}\n` }));
  }
  return pre;
}

async function restore(version) {
  if (state.running) return alertText("Wait for the answer in progress, or press Stop, then restore.");
  const restored = await call("POST", `/api/fragments/${encodeURIComponent(version.id)}/restore`, {});
  clearAlert();
  emptyChat(false);
  $("messages").append(messageView(restored.message));
  await loadVersions({ select: restored.fragment.id });
}

// --- code in and out (DESIGN section 18) ---------------------------------------------------

const IMPORT_WORDS = { PENDING: "waiting for a worker…", RUNNING: "cloning…" };

async function importRepository() {
  const url = $("repo-url").value.trim();
  if (!url) return alertText("Paste the repository's https:// URL first.");
  const fallback = url.replace(/\/+$/, "").split("/").pop().replace(/\.git$/, "");
  const name = $("project-name").value.trim() || fallback || "Imported";
  const token = $("repo-token").value;
  const project = await call("POST", "/api/projects", { name, framework: $("framework").value });
  const body = { url };
  if (token) body.token = token;
  let started;
  try {
    started = await call("POST", `/api/projects/${encodeURIComponent(project.id)}/imports`, body);
  } finally {
    $("repo-token").value = ""; // used once, never kept
  }
  $("project-name").value = "";
  clearAlert();
  state.projects = [project, ...(state.projects || [])];
  await openProject(project);
  await watchImport(started, project);
}

async function watchImport(found, project) {
  const status = $("import-status");
  status.hidden = false;
  delete status.dataset.status;
  while (found.status === "PENDING" || found.status === "RUNNING") {
    status.textContent = `Import of ${found.url}: ${IMPORT_WORDS[found.status]}`;
    await new Promise((resolve) => setTimeout(resolve, 700));
    found = await call("GET", `/api/imports/${encodeURIComponent(found.id)}`);
  }
  status.dataset.status = found.status;
  if (found.status === "FAILED") {
    status.textContent = `Import failed: ${found.error}`;
    return;
  }
  status.textContent = `Imported ${found.url}.`;
  if (state.project === project) await openProject(project);
}

async function download() {
  const version = state.selected;
  if (!version) return;
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const response = await fetch(`/api/fragments/${encodeURIComponent(version.id)}/archive`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!response.ok) return alertText(`The download failed (HTTP ${response.status}).`);
  const link = el("a", {
    href: URL.createObjectURL(await response.blob()),
    download: `${state.project ? state.project.name : "app"}-v${version.version}.zip`,
  });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function showPublished(published) {
  const link = $("published-url");
  link.hidden = !published;
  $("unpublish").hidden = !published;
  if (!published) return link.removeAttribute("href");
  link.href = published.url;
  link.textContent = published.url;
  link.title = `Serving the version ${published.fragmentId}`;
}

async function publish() {
  const version = state.selected;
  if (!version || !state.project) return;
  const path = `/api/projects/${encodeURIComponent(state.project.id)}/publish`;
  const published = await call("POST", path, { fragmentId: version.id });
  state.project.published = published;
  clearAlert();
  showPublished(published);
}

async function unpublish() {
  if (!state.project) return;
  const path = `/api/projects/${encodeURIComponent(state.project.id)}/publish`;
  const project = await call("DELETE", path);
  state.project.published = project.published;
  showPublished(null);
}

// --- wiring -------------------------------------------------------------------------------

function start() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return alertText("Paste a token first.");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    clearAlert();
    signIn();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("alert-close").addEventListener("click", clearAlert);
  $("new-project").addEventListener("submit", createProject);
  $("prompt-form").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("prompt-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stop);
  $("revive").addEventListener("click", revive);
  $("import-repo").addEventListener("click", () => guarded(importRepository));
  $("download").addEventListener("click", () => guarded(download));
  $("publish").addEventListener("click", () => guarded(publish));
  $("unpublish").addEventListener("click", () => guarded(unpublish));
  takeTokenFromFragment();
  signIn();
}

start();
