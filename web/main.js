// The page: reads the chosen checkpoint and image, runs lskbb (compiled to WebAssembly) on
// WebGPU and shows the top classes, and the explanation picture: the image as the model saw
// it, the Grad-CAM heat map of the predicted class over it, and the LSK selection masks.
// `?checkpoint=URL&image=URL` loads both from the server instead (the end-to-end test does).
import init, { Model } from "./pkg/lskbb_web.js";

const $ = (id) => document.getElementById(id);
let model = null;
let imageBytes = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function fail(e) {
  status(String(e && e.message ? e.message : e), true);
  document.body.dataset.state = "error";
}

async function loadModel(bytes, name) {
  status(`Loading ${name}…`);
  model = await Model.load(bytes, name);
  status(`${name}: ${model.classes().length} classes, on ${model.adapter()}`);
}

function showImage(bytes) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      // at most 384 px a side; small images (the model reads 32 px) drawn 192 px wide or more
      const scale = Math.min(384 / Math.max(img.width, img.height), Math.max(1, 192 / img.width));
      const c = $("view");
      c.width = Math.round(img.width * scale);
      c.height = Math.round(img.height * scale);
      c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
      resolve();
    };
    img.onerror = () => resolve(); // TIFF has no browser decoder: classify it all the same
    img.src = URL.createObjectURL(new Blob([bytes]));
  });
}

function showClasses(p) {
  const rows = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 5);
  $("classes").innerHTML = "<tr><th>class</th><th>probability</th><th></th></tr>";
  for (const [name, v] of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td>${(100 * v).toFixed(2)}%</td><td class="bar"><div></div></td>`;
    tr.cells[0].textContent = name;
    tr.querySelector("div").style.width = `${(100 * v).toFixed(1)}%`;
    $("classes").appendChild(tr);
  }
}

async function classify() {
  if (!model || !imageBytes) return;
  status("Classifying and explaining…");
  await showImage(imageBytes);
  const [json, png] = await model.explain(imageBytes);
  const p = JSON.parse(json);
  showClasses(p);
  await new Promise((resolve) => {
    const img = $("explanation");
    img.onload = img.onerror = resolve;
    img.src = URL.createObjectURL(new Blob([png], { type: "image/png" }));
  });
  $("result").textContent = JSON.stringify(p);
  status(`${p.class} (${(100 * p.probability).toFixed(1)}%), on ${model.adapter()}`);
  document.body.dataset.state = "done";
}

const bytesOf = async (blob) => new Uint8Array(await blob.arrayBuffer());

async function main() {
  if (!navigator.gpu) {
    throw new Error("this browser has no WebGPU (navigator.gpu): use a current Chrome, Edge or Safari, or Firefox with WebGPU on");
  }
  await init();
  status("Pick a checkpoint and an image.");
  $("checkpoint").onchange = (e) => {
    const f = e.target.files[0];
    if (f) bytesOf(f).then((b) => loadModel(b, f.name)).then(classify).catch(fail);
  };
  $("image").onchange = (e) => {
    const f = e.target.files[0];
    if (f) bytesOf(f).then((b) => { imageBytes = b; return classify(); }).catch(fail);
  };
  const q = new URLSearchParams(location.search);
  if (q.get("checkpoint") && q.get("image")) {
    const get = async (url) => {
      const r = await fetch(url);
      if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
      return bytesOf(await r.blob());
    };
    imageBytes = await get(q.get("image"));
    await loadModel(await get(q.get("checkpoint")), q.get("checkpoint"));
    await classify();
  }
}

main().catch(fail);
