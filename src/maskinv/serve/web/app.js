// maskinv door desk: plain JS, no build step. Talks to the same server's /v1 API.
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = sessionStorage.getItem("maskinv-key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("maskinv-key", keyInput.value); refresh(); });
let enrolSnaps = [];
let probeSnap = null;

async function api(method, path, form) {
  const resp = await fetch(path, { method, body: form, headers: { "X-API-Key": keyInput.value } });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { error: { message: "HTTP " + resp.status } }; }
  if (!resp.ok) throw new Error((body.error && body.error.message) || ("HTTP " + resp.status));
  return body;
}

function showError(el, err) { el.textContent = err.message; el.className = "result error"; }

async function refresh() {
  try {
    const h = await (await fetch("/health")).json();
    $("health").textContent = `model ${h.model.slice(0, 12)}… · ${h.identities} enrolled`;
  } catch (e) { $("health").textContent = "server unreachable"; }
  if (!keyInput.value) return;
  try {
    const r = await api("GET", "/v1/identities");
    const ul = $("identities"); ul.innerHTML = "";
    const sel = $("against"); const keep = sel.value;
    sel.innerHTML = '<option value="">(identify: search everyone)</option>';
    for (const i of r.identities) {
      const li = document.createElement("li"); li.textContent = i.identity + " ";
      const del = document.createElement("button"); del.textContent = "remove";
      del.onclick = async () => { await api("DELETE", "/v1/identities/" + encodeURIComponent(i.identity)); refresh(); };
      li.appendChild(del); ul.appendChild(li);
      const o = document.createElement("option"); o.value = i.identity; o.textContent = i.identity; sel.appendChild(o);
    }
    sel.value = keep;
  } catch (e) { /* a verify-only key cannot list identities */ }
}

async function snapshot() {
  const box = $("cam-box"), video = $("video"), canvas = $("canvas");
  if (!video.srcObject) {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    box.hidden = false;
    await new Promise((r) => setTimeout(r, 800));
  }
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.92));
}

$("enrol-webcam").onclick = async () => {
  try { enrolSnaps.push(await snapshot()); $("enrol-result").textContent = `${enrolSnaps.length} snapshot(s) ready`; }
  catch (e) { showError($("enrol-result"), e); }
};
$("probe-webcam").onclick = async () => {
  try { probeSnap = await snapshot(); $("verdict").textContent = "snapshot ready"; }
  catch (e) { showError($("check-result"), e); }
};

$("enrol-go").onclick = async () => {
  const out = $("enrol-result");
  const form = new FormData();
  form.append("name", $("enrol-name").value);
  for (const f of $("enrol-files").files) form.append("images", f, f.name);
  enrolSnaps.forEach((b, i) => form.append("images", b, `webcam${i}.jpg`));
  out.className = "result"; out.textContent = "enrolling…";
  try {
    const r = await api("POST", "/v1/identities", form);
    out.textContent = `enrolled ${r.identity} from ${r.photos} photo(s)`;
    enrolSnaps = []; $("enrol-files").value = "";
    refresh();
  } catch (e) { showError(out, e); }
};

$("check-go").onclick = async () => {
  const form = new FormData();
  const f = $("probe-file").files[0];
  if (f) form.append("image", f, f.name); else if (probeSnap) form.append("image", probeSnap, "webcam.jpg");
  form.append("return_crop", "true");
  const against = $("against").value;
  if (against) form.append("identity", against);
  const verdict = $("verdict");
  verdict.className = ""; verdict.textContent = "checking…";
  $("why").textContent = ""; $("condition").textContent = ""; $("bar").hidden = true; $("bar-label").textContent = "";
  try {
    const r = await api("POST", against ? "/v1/verify" : "/v1/identify", form);
    const crop = $("crop"); crop.src = r.probe.crop; crop.hidden = false;
    const ok = r.decision === "accept" || r.decision === "match";
    verdict.className = ok ? "accept" : "reject";
    verdict.textContent = against ? (ok ? "ACCEPT" : "REJECT") + " · " + against
                                  : (ok ? "MATCH · " + r.identity : "NO MATCH");
    $("condition").textContent = `${r.probe.condition} (P(masked) = ${r.probe.p_masked.toFixed(2)})`;
    $("why").textContent = `threshold ${r.threshold.value.toFixed(3)} (${r.threshold.protocol}): ${r.threshold.why}`;
    const score = against ? r.score : (r.candidates[0] || {}).score;
    if (score !== undefined) {   // raw scores come only with an admin key
      // the bar spans [threshold - 0.2, 1]: the threshold mark sits at a sixth, the score is left or right of it
      const lo = r.threshold.value - 0.2;
      const pos = (v) => Math.max(0, Math.min(100, (v - lo) / (1 - lo) * 100));
      $("bar-fill").style.width = pos(score) + "%";
      $("bar-thr").style.left = pos(r.threshold.value) + "%";
      $("bar").hidden = false;
      $("bar-label").textContent = `score ${score.toFixed(3)} vs threshold ${r.threshold.value.toFixed(3)}`;
    }
  } catch (e) { verdict.className = "reject"; verdict.textContent = e.message; }
};

refresh();
