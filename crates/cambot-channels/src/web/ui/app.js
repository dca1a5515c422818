// cambot web chat. No framework, no build step, no inline script (the page's CSP forbids it).
// The access token lives only in memory; the refresh token is an HttpOnly cookie the script
// never sees. Replies stream over a WebSocket as numbered events; after a reconnect the client
// asks for everything after the last number it saw.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  token: null, expiresAt: 0, user: null, tenant: null,
  sessions: [], current: null,
  ws: null, wsReady: false, epoch: null, lastSeq: {}, backoff: 500,
  shownReplies: new Set(), streaming: null, refreshTimer: null,
  pending: [],
};

// ---- Markdown: escape everything first, then add a small set of tags. ----
function escapeHtml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
function inline(s) {
  // s is already escaped.
  const codes = [];
  s = s.replace(/`([^`\n]+)`/g, (_, c) => { codes.push(c); return '\u0000' + (codes.length - 1) + '\u0000'; });
  s = s.replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>');
  s = s.replace(/(^|[^*])\*([^*\n]+)\*/g, '$1<em>$2</em>');
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
    (_, text, url) => '<a href="' + url + '" target="_blank" rel="noopener noreferrer">' + text + '</a>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => '<code>' + codes[Number(i)] + '</code>');
}
function renderMarkdown(src) {
  const lines = escapeHtml(src).split('\n');
  const out = [];
  let para = [], list = null, code = null;
  const flushPara = () => { if (para.length) { out.push('<p>' + para.map(inline).join('<br>') + '</p>'); para = []; } };
  const flushList = () => { if (list) { out.push('<' + list.tag + '>' + list.items.map((i) => '<li>' + inline(i) + '</li>').join('') + '</' + list.tag + '>'); list = null; } };
  for (const line of lines) {
    if (code !== null) {
      if (/^```/.test(line)) { out.push('<pre><code>' + code.join('\n') + '</code></pre>'); code = null; } else { code.push(line); }
      continue;
    }
    let m;
    if (/^```/.test(line)) { flushPara(); flushList(); code = []; }
    else if ((m = /^(#{1,4})\s+(.*)$/.exec(line))) { flushPara(); flushList(); const n = m[1].length + 2; out.push('<h' + n + '>' + inline(m[2]) + '</h' + n + '>'); }
    else if ((m = /^\s*[-*]\s+(.*)$/.exec(line))) { flushPara(); if (!list || list.tag !== 'ul') { flushList(); list = { tag: 'ul', items: [] }; } list.items.push(m[1]); }
    else if ((m = /^\s*\d+[.)]\s+(.*)$/.exec(line))) { flushPara(); if (!list || list.tag !== 'ol') { flushList(); list = { tag: 'ol', items: [] }; } list.items.push(m[1]); }
    else if (line.trim() === '') { flushPara(); flushList(); }
    else { flushList(); para.push(line); }
  }
  if (code !== null) out.push('<pre><code>' + code.join('\n') + '</code></pre>');
  flushPara(); flushList();
  return out.join('');
}

// ---- HTTP ----
async function api(method, path, body, retried) {
  const headers = {};
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let payload;
  if (body instanceof Blob) { payload = body; } else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (res.status === 401 && !retried && !path.startsWith('/api/auth/')) {
    if (await refreshToken()) return api(method, path, body, true);
    showLogin();
  }
  return res;
}

function setToken(data) {
  state.token = data.access_token; state.expiresAt = data.expires_at;
  state.user = data.user; state.tenant = data.tenant;
  clearTimeout(state.refreshTimer);
  const ms = Math.max(5000, (data.expires_at * 1000 - Date.now()) - 60000);
  state.refreshTimer = setTimeout(refreshToken, ms);
}

let refreshing = null;
function refreshToken() {
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const res = await fetch('/api/auth/refresh', { method: 'POST', credentials: 'same-origin' });
        if (!res.ok) { state.token = null; return false; }
        setToken(await res.json());
        if (state.ws && state.wsReady) state.ws.send(JSON.stringify({ type: 'auth', token: state.token }));
        return true;
      } catch (e) { return false; } finally { setTimeout(() => { refreshing = null; }, 0); }
    })();
  }
  return refreshing;
}

// ---- Views ----
function showLogin() {
  closeSocket();
  $('app').hidden = true; $('login').hidden = false;
}
async function showApp() {
  $('login').hidden = true; $('app').hidden = false;
  $('who').textContent = state.user + (state.tenant && state.tenant !== 'default' ? ' @ ' + state.tenant : '');
  openSocket();
  await loadSessions();
  await route();
}

async function loadSessions() {
  const res = await api('GET', '/api/sessions');
  if (!res.ok) return;
  state.sessions = await res.json();
  renderSessions();
}
function renderSessions() {
  const ul = $('sessions'); ul.textContent = '';
  for (const s of state.sessions) {
    const li = document.createElement('li');
    li.textContent = s.title || 'New session';
    li.dataset.sessionId = s.id;
    if (s.expired) li.classList.add('expired');
    if (state.current && state.current.id === s.id) li.classList.add('active');
    li.addEventListener('click', () => { location.hash = '#/s/' + s.id; });
    ul.appendChild(li);
  }
}

async function newSession() {
  const res = await api('POST', '/api/sessions');
  if (!res.ok) { $('chat-error').textContent = 'Could not create a session (' + res.status + ')'; return; }
  const s = await res.json();
  state.sessions.unshift(s);
  location.hash = '#/s/' + s.id;
}

function sessionFromHash() {
  const m = /^#\/s\/([0-9a-f]{1,64})$/.exec(location.hash);
  return m ? m[1] : null;
}

async function route() {
  const id = sessionFromHash();
  if (!id) {
    const live = state.sessions.find((s) => !s.expired);
    if (live) { location.replace('#/s/' + live.id); return route(); }
    return newSession();
  }
  return openSession(id);
}

let opening = 0;
async function openSession(id) {
  // Frames and late responses for the previous session must not land in this one.
  const generation = ++opening;
  state.current = null; setComposer(false);
  $('notfound').hidden = true; $('expired').hidden = true; $('chat-error').textContent = '';
  $('messages').textContent = ''; state.shownReplies = new Set(); state.streaming = null;
  const res = await api('GET', '/api/sessions/' + id + '/history');
  if (generation !== opening) return;
  $('messages').textContent = '';
  if (res.status === 404) {
    state.current = null; renderSessions();
    $('notfound').hidden = false; $('session-title').textContent = 'cambot';
    setComposer(false);
    return;
  }
  if (!res.ok) { $('chat-error').textContent = 'Could not load the session (' + res.status + ')'; return; }
  const data = await res.json();
  if (generation !== opening) return;
  state.current = data.session;
  $('session-title').textContent = data.session.title || 'New session';
  for (const item of data.items) {
    if (item.role === 'user') addMessage('user', item.text);
    else addReply(item.id, item.text);
  }
  $('expired').hidden = !data.session.expired;
  setComposer(!data.session.expired);
  renderSessions();
  subscribe();
}

function setComposer(enabled) {
  $('composer-input').disabled = !enabled; $('composer-send').disabled = !enabled; $('upload').disabled = !enabled;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  if (role === 'user') div.textContent = text; else div.innerHTML = renderMarkdown(text);
  $('messages').appendChild(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}
function addReply(id, text) {
  if (state.shownReplies.has(id)) return;
  state.shownReplies.add(id);
  let div = state.streaming ? state.streaming.div : null;
  state.streaming = null;
  if (div) { div.classList.remove('streaming'); div.innerHTML = renderMarkdown(text); } else { div = addMessage('assistant', text); }
  div.dataset.replyId = String(id);
  div.scrollIntoView({ block: 'end' });
}
function addDelta(text) {
  if (!state.streaming) {
    const div = addMessage('assistant', '');
    div.classList.add('streaming');
    state.streaming = { div, text: '' };
  }
  state.streaming.text += text;
  state.streaming.div.innerHTML = renderMarkdown(state.streaming.text);
  state.streaming.div.scrollIntoView({ block: 'end' });
}

// ---- WebSocket ----
function setStatus(s) { $('status').textContent = s; $('status').dataset.state = s; }
function closeSocket() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  state.ws = null; state.wsReady = false; setStatus('offline');
}
function openSocket() {
  if (state.ws) return;
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  state.ws = ws; setStatus('connecting');
  ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token: state.token }));
  ws.onmessage = (ev) => onFrame(JSON.parse(ev.data));
  ws.onclose = async (ev) => {
    state.ws = null; state.wsReady = false; setStatus('offline');
    if (ev.code === 4401 && !(await refreshToken())) { showLogin(); return; }
    const wait = state.backoff; state.backoff = Math.min(state.backoff * 2, 5000);
    setTimeout(() => { if (state.token) openSocket(); }, wait);
  };
}
function subscribe() {
  if (!state.wsReady || !state.current) return;
  const id = state.current.id;
  state.ws.send(JSON.stringify({ type: 'subscribe', session: id, epoch: state.epoch, after: state.lastSeq[id] || 0 }));
}
function onFrame(f) {
  if (f.type === 'ready') {
    state.wsReady = true; state.backoff = 500; setStatus('online');
    if (state.epoch !== f.epoch) { state.lastSeq = {}; }
    state.epoch = f.epoch;
    subscribe();
    return;
  }
  const current = state.current && f.session === state.current.id;
  if (f.type === 'subscribed' || f.type === 'resync') {
    if (!current) return;
    if (f.resync) { state.lastSeq[f.session] = f.head; openSession(f.session); return; }
    if (f.type === 'resync') { state.lastSeq[f.session] = f.head; openSession(f.session); }
    return;
  }
  if (f.type === 'delta' || f.type === 'reply') {
    state.lastSeq[f.session] = Math.max(state.lastSeq[f.session] || 0, f.seq);
    if (!current) return;
    if (f.type === 'delta') addDelta(f.text); else addReply(f.id, f.text);
    return;
  }
  if (f.type === 'error') {
    $('chat-error').textContent = f.message || f.code;
    if (f.code === 'expired') { $('expired').hidden = false; setComposer(false); }
  }
}

// ---- Sending ----
function clientId() {
  const b = new Uint8Array(12); crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
async function send(text) {
  if (!state.current) return;
  const id = state.current.id, cid = clientId();
  const attachments = state.pending.map((a) => a.id);
  const names = state.pending.map((a) => '[' + a.name + ']').join(' ');
  state.pending = []; $('chat-error').textContent = '';
  addMessage('user', names ? (text ? text + '\n' + names : names) : text);
  if (!state.current.title && text) { state.current.title = text.slice(0, 60); $('session-title').textContent = state.current.title; loadSessions(); }
  if (state.ws && state.wsReady) {
    state.ws.send(JSON.stringify({ type: 'send', session: id, text, client_id: cid, attachments }));
    return;
  }
  const res = await api('POST', '/api/sessions/' + id + '/messages', { text, client_id: cid, attachments });
  if (res.status === 409) { $('expired').hidden = false; setComposer(false); }
  else if (!res.ok) $('chat-error').textContent = 'Not sent (' + res.status + ')';
}

async function upload(file) {
  if (!state.current || !file) return;
  const res = await api('POST', '/api/sessions/' + state.current.id + '/uploads?name=' + encodeURIComponent(file.name), file);
  if (!res.ok) {
    let why = '';
    try { why = (await res.json()).message || ''; } catch (e) { why = ''; }
    $('chat-error').textContent = 'Upload failed (' + res.status + ')' + (why ? ': ' + why : '');
    return;
  }
  // Sent with the next message, which shows the agent each file's path and type.
  const info = await res.json();
  state.pending.push({ id: info.id, name: info.name });
  $('chat-error').textContent = 'Attached: ' + state.pending.map((a) => a.name).join(', ');
}

// ---- Wiring ----
document.addEventListener('DOMContentLoaded', async () => {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    const res = await fetch('/api/auth/login', {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: $('login-user').value, password: $('login-password').value, tenant: $('login-tenant').value || null }),
    });
    if (!res.ok) { $('login-error').textContent = res.status === 429 ? 'Too many attempts; wait a minute.' : 'Wrong user name or password.'; return; }
    $('login-password').value = '';
    setToken(await res.json());
    showApp();
  });
  $('logout').addEventListener('click', async () => {
    await fetch('/api/auth/logout', { method: 'POST', credentials: 'same-origin' });
    state.token = null; clearTimeout(state.refreshTimer); showLogin();
  });
  $('new-session').addEventListener('click', newSession);
  $('continue').addEventListener('click', newSession);
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('composer-input').value.trim();
    if (!text && !state.pending.length) return;
    $('composer-input').value = '';
    send(text);
  });
  $('composer-input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); $('composer').requestSubmit(); }
  });
  $('upload').addEventListener('change', (ev) => { upload(ev.target.files[0]); ev.target.value = ''; });
  window.addEventListener('hashchange', () => { if (state.token) route(); });
  if (await refreshToken()) showApp(); else showLogin();
});
