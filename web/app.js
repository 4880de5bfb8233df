// app.js: the page of `dalle serve`. Sends the caption to the server's
// OpenAI-style endpoint, polls /v1/progress while it samples, shows the images
// and offers the grid for download. No build step, no libraries.
"use strict";
const $ = (id) => document.getElementById(id);

async function poll(active) {
  while (active.on) {
    try {
      const p = await (await fetch("/v1/progress")).json();
      if (p.total > 0) { $("bar").max = p.total; $("bar").value = p.done; }
      $("msg").textContent = p.busy ? `drawing image tokens: ${p.done} of ${p.total}` : `waiting (${p.queued} in the queue)`;
    } catch (e) { /* the next poll will tell */ }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function gridPng(images) {
  const s = images[0].naturalWidth, gap = 2, c = document.createElement("canvas");
  c.width = images.length * s + (images.length - 1) * gap;
  c.height = s;
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, c.width, c.height);
  images.forEach((im, i) => g.drawImage(im, i * (s + gap), 0));
  return c.toDataURL("image/png");
}

async function generate(ev) {
  ev.preventDefault();
  const body = {
    prompt: $("prompt").value, n: Number($("n").value), seed: Number($("seed").value),
    temperature: Number($("temperature").value), candidates: Number($("candidates").value),
    guidance: Number($("guidance").value),
    response_format: "b64_json",
  };
  $("go").disabled = true;
  $("grid").replaceChildren();
  $("download").hidden = true;
  $("bar").hidden = false;
  $("bar").value = 0;
  const active = { on: true };
  poll(active);
  try {
    const r = await fetch("/v1/images/generations", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    const images = j.data.map((d) => {
      const im = new Image();
      im.src = "data:image/png;base64," + d.b64_json;
      im.alt = body.prompt;
      $("grid").append(im);
      return im;
    });
    await Promise.all(images.map((im) => im.decode()));
    $("download").href = gridPng(images);
    $("download").hidden = false;
    $("msg").textContent = `${images.length} image${images.length > 1 ? "s" : ""}`;
  } catch (e) {
    $("msg").textContent = "error: " + e.message;
  } finally {
    active.on = false;
    $("bar").hidden = true;
    $("go").disabled = false;
  }
}

$("form").addEventListener("submit", generate);
// "best of" only where the model has a reranker
fetch("/health").then((r) => r.json()).then((h) => {
  $("rerank").hidden = !h.reranker;
  if (typeof h.guidance === "number") $("guidance").value = h.guidance; // the model's recommended scale
}).catch(() => {});
