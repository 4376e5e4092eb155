"""The editor's page: the email in a frame, the checks beside it, and a few lines of script for live updates.

Templates are autoescaped; the only script is inline, carries the response's
nonce, and does four things: size the frame to the email, switch 375/600 px,
jump to a section, and refresh the frame and the panel when the server says
the issue changed (Server-Sent Events).
"""

from __future__ import annotations

import jinja2

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Issue {{ number }} · live preview</title>
<style nonce="{{ nonce }}">
:root { --ink: #1d2733; --muted: #5b6776; --line: #d8dee6; --error: #b3261e; --warning: #8a5a00;
        --brand: #0b5394; --paper: #ffffff; --desk: #eef1f5; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: var(--desk); display: flex; flex-direction: column; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px 20px; padding: 10px 18px;
         background: var(--paper); border-bottom: 1px solid var(--line); }
h1 { font-size: 17px; margin: 0; }
.widths { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.widths button { font: inherit; border: 0; background: var(--paper); padding: 5px 12px; cursor: pointer; }
.widths button[aria-pressed="true"] { background: var(--brand); color: #fff; }
form { display: flex; gap: 6px; align-items: center; }
input[type=email] { font: inherit; padding: 4px 8px; width: 16em; border: 1px solid var(--line); border-radius: 6px; }
form button { font: inherit; padding: 4px 10px; border: 1px solid var(--line); border-radius: 6px;
              background: var(--paper); cursor: pointer; }
#status { margin-left: auto; color: var(--muted); font-size: 13px; }
#status.off { color: var(--error); }
main { flex: 1; display: flex; min-height: 0; }
#desk { flex: 1 1 auto; overflow: auto; padding: 18px; min-width: 0; }
#email { display: block; margin: 0 auto; border: 0; background: var(--paper); width: 600px; height: 80vh;
         box-shadow: 0 1px 4px rgba(0, 0, 0, .15); }
#panel { flex: 0 0 440px; overflow: auto; background: var(--paper); border-left: 1px solid var(--line);
         padding: 14px 18px; }
#panel h2 { font-size: 15px; margin: 16px 0 8px; }
.box { border-radius: 6px; padding: 10px 12px; margin: 0 0 12px; }
.box.error { background: #fdecea; border: 1px solid #f2b8b5; }
.box.warning { background: #fff4e0; border: 1px solid #f0d29b; }
.box code { display: block; white-space: pre-wrap; word-break: break-word; margin: 6px 0; font-size: 13px; }
dl.meta { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; font-size: 14px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; word-break: break-word; }
ol.findings { list-style: none; padding: 0; margin: 0; }
ol.findings li { border-top: 1px solid var(--line); padding: 8px 0; overflow-wrap: anywhere; }
.severity { display: inline-block; font-size: 12px; font-weight: 700; text-transform: uppercase;
            border-radius: 4px; padding: 0 6px; margin-right: 6px; color: #fff; }
.severity.error { background: var(--error); }
.severity.warning { background: var(--warning); }
.code { font-family: ui-monospace, monospace; font-size: 13px; color: var(--muted); }
.where { font-family: ui-monospace, monospace; font-size: 12.5px; word-break: break-word; margin: 2px 0; }
.fix { color: var(--muted); margin: 2px 0 0; }
.fix::before { content: "Fix: "; font-weight: 600; }
pre.text { white-space: pre-wrap; word-break: break-word; font-size: 13px; background: var(--desk);
           padding: 10px; border-radius: 6px; }
.quiet { color: var(--muted); font-size: 13px; }
@media (max-width: 1100px) { main { flex-direction: column; overflow: auto; }
  #desk { overflow: visible; } #panel { flex: none; border-left: 0; border-top: 1px solid var(--line); } }
</style></head>
<body data-query="{{ query }}">
<header>
  <h1>Issue {{ number }} · live preview</h1>
  <div class="widths" role="group" aria-label="Width of the email">
    <button type="button" data-width="375" aria-pressed="{{ 'true' if width == 375 else 'false' }}">Phone 375 px</button>
    <button type="button" data-width="600" aria-pressed="{{ 'true' if width != 375 else 'false' }}">Desktop 600 px</button>
  </div>
  <form method="get" action="/">
    <label for="as">Preview as</label>
    <input type="email" id="as" name="as" value="{{ as_email }}" placeholder="someone@example.org" maxlength="320">
    <input type="hidden" name="width" value="{{ width }}">
    <button type="submit">Show</button>
  </form>
  <span id="status" role="status">connecting…</span>
</header>
<main>
  <div id="desk"><iframe id="email" name="email" title="The email" src="/email{{ query }}"
       sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"
       data-width="{{ width }}"></iframe></div>
  <aside id="panel" aria-live="polite">{{ panel }}</aside>
</main>
<script nonce="{{ nonce }}">
const frame = document.getElementById("email"), panel = document.getElementById("panel");
const status = document.getElementById("status"), query = document.body.dataset.query;
const desk = document.getElementById("desk");
function fit() {  /* the frame as tall as what it shows, so only the desk scrolls (and keeps its place) */
  const doc = frame.contentDocument, top = desk.scrollTop;
  if (!doc || !doc.documentElement) return;
  frame.style.height = "0px";
  frame.style.height = doc.documentElement.scrollHeight + "px";
  desk.scrollTop = top;
}
function setWidth(width) {
  frame.style.width = width + "px";
  frame.dataset.width = width;
  document.querySelector("input[name=width]").value = width;
  for (const b of document.querySelectorAll("[data-width]")) b.setAttribute("aria-pressed", b.dataset.width == width);
  requestAnimationFrame(fit);
}
frame.addEventListener("load", fit);
for (const b of document.querySelectorAll("button[data-width]")) b.addEventListener("click", () => setWidth(b.dataset.width));
setWidth(frame.dataset.width);
panel.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-anchor]");
  const target = link && frame.contentDocument && frame.contentDocument.getElementById(link.dataset.anchor);
  if (target) { event.preventDefault(); target.scrollIntoView({block: "start", behavior: "smooth"}); }
});
async function refresh(version) {
  frame.contentWindow.location.replace("/email" + query);
  const answer = await fetch("/panel" + query, {cache: "no-store"});
  if (answer.ok) panel.innerHTML = await answer.text();
  status.textContent = "live · updated " + new Date().toLocaleTimeString();
}
const events = new EventSource("/events");
events.addEventListener("open", () => { status.textContent = "live"; status.className = ""; });
events.addEventListener("render", (event) => refresh(event.data));
events.addEventListener("error", () => { status.textContent = "not connected: is campaign preview --serve running?";
                                          status.className = "off"; });
</script>
</body></html>
"""

PANEL = """<div id="snapshot" data-version="{{ snapshot.version }}">
{% if recipient_error %}<div class="box warning" id="recipient-error"><strong>Preview as:</strong>
{{ recipient_error }}<br>Showing the sample values.</div>{% endif %}
{% if snapshot.error %}<div class="box error" id="render-error"><strong>The issue cannot be rendered.</strong>
<code>{{ snapshot.error }}</code>Fix the file and save it: this page updates by itself.</div>
{% else %}<dl class="meta">
<dt>Subject</dt><dd id="subject">{{ subject }}</dd>
<dt>Preheader</dt><dd>{{ snapshot.rendered.preheader }}</dd>
<dt>To</dt><dd>{{ recipient }}</dd>
<dt>Rendered</dt><dd>{{ snapshot.made.strftime("%H:%M:%S") }} in {{ "%.2f" | format(snapshot.seconds) }} s</dd>
</dl>
<h2>Checks: {{ errors }} error{{ "" if errors == 1 else "s" }}, {{ warnings }} warning{{ "" if warnings == 1 else "s" }}</h2>
{% for note in snapshot.notes %}<p class="quiet">{{ note }}</p>{% endfor %}
<ol class="findings" id="findings">
{% for finding, anchor in findings %}<li class="{{ finding.severity }}" data-code="{{ finding.code }}">
<span class="severity {{ finding.severity }}">{{ finding.severity }}</span><span class="code">{{ finding.code }}</span>
<div class="where">{% if anchor %}<a href="/email{{ query }}#{{ anchor }}" target="email" data-anchor="{{ anchor }}">{{ finding.where }}</a>{% else %}{{ finding.where }}{% endif %}</div>
<div>{{ finding.message }}</div><p class="fix">{{ finding.fix }}</p></li>
{% else %}<li>No findings.</li>{% endfor %}
</ol>
<h2>Plain-text part</h2>
<pre class="text" id="text-part">{{ text }}</pre>
{% endif %}</div>"""

ERROR_EMAIL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Render error</title></head>
<body style="font: 15px/1.5 system-ui, sans-serif; margin: 24px; color: #1d2733;">
<h1 style="font-size: 18px; color: #b3261e;">The issue cannot be rendered</h1>
<pre style="white-space: pre-wrap; word-break: break-word;">{{ error }}</pre>
<p>Fix the file and save it: the preview updates by itself.</p></body></html>
"""

templates = jinja2.Environment(
    loader=jinja2.DictLoader({"page.html": PAGE, "panel.html": PANEL, "error.html": ERROR_EMAIL}),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
