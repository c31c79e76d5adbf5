// writetune's edit page: sends the text to /v1/edit, shows each suggested edit inline, lets the writer accept or
// reject each one, and keeps the result (the input with the accepted edits applied) ready to copy.
// Edit offsets are Unicode code points (Python string indices), so the text is handled as an array of code points.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { chars: [], edits: [], decisions: [], response: null, maxChars: null };
window.writetune = state; // for people poking at the page from the console

function setStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function codePoints(text) {
  return Array.from(text);
}

async function api(path, payload) {
  const headers = {};
  const key = $("apikey").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  const options = { headers };
  if (payload !== undefined) {
    options.method = "POST";
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(payload);
  }
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (err) { body = null; }
  if (!res.ok) {
    const message = body && body.error ? body.error.message : res.statusText;
    const error = new Error(`${message} (HTTP ${res.status})`);
    error.status = res.status;
    throw error;
  }
  return body;
}

function visible(text) {
  // whitespace-only pieces would be invisible; show them as ␣ and ↵
  return /^\s+$/.test(text) ? text.replace(/\n/g, "↵").replace(/[^\S\n]/g, "␣") : text;
}

function resultText() {
  const out = [];
  let pos = 0;
  state.edits.forEach((edit, i) => {
    out.push(state.chars.slice(pos, edit.start).join(""));
    out.push(state.decisions[i] === "accepted" ? edit.replacement : edit.original);
    pos = edit.end;
  });
  out.push(state.chars.slice(pos).join(""));
  return out.join("");
}

function updateResult() {
  $("result").value = resultText();
  const accepted = state.decisions.filter((d) => d === "accepted").length;
  const rejected = state.decisions.filter((d) => d === "rejected").length;
  const n = state.edits.length;
  $("summary").textContent = n === 0 ? "· none: the text is unchanged"
    : `· ${n} edit${n === 1 ? "" : "s"}, ${accepted} accepted, ${rejected} rejected`;
  document.querySelectorAll("#suggestions .edit").forEach((span) => {
    const decision = state.decisions[Number(span.dataset.index)];
    span.classList.toggle("accepted", decision === "accepted");
    span.classList.toggle("rejected", decision === "rejected");
    span.classList.toggle("pending", decision === "pending");
    span.dataset.state = decision;
  });
}

function decide(index, decision) {
  state.decisions[index] = state.decisions[index] === decision ? "pending" : decision;
  updateResult();
}

function button(cls, label, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.title = title;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", onClick);
  return b;
}

function render() {
  const box = $("suggestions");
  box.replaceChildren();
  let pos = 0;
  state.edits.forEach((edit, i) => {
    box.append(document.createTextNode(state.chars.slice(pos, edit.start).join("")));
    const span = document.createElement("span");
    span.className = "edit pending";
    span.dataset.index = String(i);
    span.dataset.type = edit.type;
    span.title = `${edit.type}: “${edit.original}” → “${edit.replacement}”`;
    if (edit.original) {
      const del = document.createElement("del");
      del.textContent = visible(edit.original);
      if (del.textContent !== edit.original) del.classList.add("space");
      span.append(del);
    }
    if (edit.replacement) {
      const ins = document.createElement("ins");
      ins.textContent = visible(edit.replacement);
      if (ins.textContent !== edit.replacement) ins.classList.add("space");
      span.append(ins);
    }
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = edit.type;
    const tools = document.createElement("span");
    tools.className = "tools";
    tools.append(button("accept", "✓", `Accept edit ${i + 1}`, () => decide(i, "accepted")),
                 button("reject", "✗", `Reject edit ${i + 1}`, () => decide(i, "rejected")));
    span.append(kind, tools);
    box.append(span);
    pos = edit.end;
  });
  box.append(document.createTextNode(state.chars.slice(pos).join("")));
  updateResult();
}

async function suggest() {
  const text = $("input").value;
  if (!text.trim()) {
    setStatus("Type or paste some text first.", true);
    return;
  }
  if (state.maxChars && codePoints(text).length > state.maxChars) {
    setStatus(`The text is longer than this server accepts (${state.maxChars} characters).`, true);
    return;
  }
  const task = $("task").value;
  $("suggest").disabled = true;
  setStatus(`Asking for ${task} edits…`);
  const started = performance.now();
  try {
    const response = await api("/v1/edit", { task, text });
    state.response = response;
    state.chars = codePoints(text);
    state.edits = response.edits.slice().sort((a, b) => a.start - b.start || a.end - b.end);
    state.decisions = state.edits.map(() => "pending");
    render();
    $("review").hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`${state.edits.length} suggestion${state.edits.length === 1 ? "" : "s"} for ${response.sentences} ` +
              `sentence${response.sentences === 1 ? "" : "s"} in ${seconds} s (${response.task}, ` +
              `${response.edit_types === "errant" ? "ERRANT edit types" : "word-level edit types"}).`);
  } catch (err) {
    setStatus(err.message, true);
    if (err.status === 401) $("keybox").hidden = false;
  } finally {
    $("suggest").disabled = false;
  }
}

async function copyResult() {
  const text = $("result").value;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    $("result").select();
    document.execCommand("copy");
  }
  $("copied").textContent = "Copied.";
  setTimeout(() => { $("copied").textContent = ""; }, 2000);
}

function updateCount() {
  const n = codePoints($("input").value).length;
  $("count").textContent = state.maxChars ? `${n} / ${state.maxChars} characters` : `${n} characters`;
}

async function init() {
  $("suggest").addEventListener("click", suggest);
  $("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) suggest(); });
  $("input").addEventListener("input", updateCount);
  $("accept-all").addEventListener("click", () => { state.decisions = state.edits.map(() => "accepted"); updateResult(); });
  $("reject-all").addEventListener("click", () => { state.decisions = state.edits.map(() => "rejected"); updateResult(); });
  $("copy").addEventListener("click", copyResult);
  $("again").addEventListener("click", () => { $("input").value = $("result").value; updateCount(); $("input").focus(); });
  $("apikey").value = localStorage.getItem("writetune-api-key") || "";
  $("apikey").addEventListener("change", () => localStorage.setItem("writetune-api-key", $("apikey").value.trim()));
  try {
    const health = await api("/health");
    $("model").textContent = health.model;
    state.maxChars = health.limits.max_input_chars;
    if (health.auth_required) $("keybox").hidden = false;
  } catch (err) {
    setStatus(`The server does not answer: ${err.message}`, true);
  }
  updateCount();
  try {
    const tasks = await api("/v1/tasks");
    const select = $("task");
    select.replaceChildren();
    for (const task of tasks.data) {
      const option = document.createElement("option");
      option.value = task.name;
      option.textContent = task.name === "all" ? "all (grammar, then clarity)" : task.name;
      option.title = task.description;
      select.append(option);
    }
    select.value = "grammaticality";
  } catch (err) {
    setStatus(`Could not load the task list: ${err.message}`, true);
  }
  document.body.dataset.ready = "true";
}

init();
