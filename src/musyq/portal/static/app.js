// The musyq portal page: a Leaflet map of one catalog item at a time, layers drawn by the server's tile API,
// an inspector with the clicked pixel's values and series, downloads and clips of a drawn box, band math saved as
// products, and orders of the box. No other library, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const map = L.map("map", { zoomControl: true }).setView([20, 0], 2);
let items = [];
let layer = null;
let overlay = null;
let marker = null;
let box = null;  // the drawn rectangle
let drawing = null;
let drewAt = 0;

function boxText() {
  if (!box) return "";
  const b = box.getBounds();
  return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(5)).join(",");
}

function say(text) { $("message").textContent = text || ""; }

async function getJson(url, payload) {
  const response = await fetch(url, payload === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
  const body = await response.json();
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ") : body.detail;
    throw new Error(detail || response.statusText);
  }
  return body;
}

function current() { return items[Number($("date").value)]; }

function imageAsset(item) {
  if (item.assets.SR) return "SR";
  const withBands = Object.keys(item.assets).filter((k) => item.assets[k].bands.length && item.assets[k].type.startsWith("image/tiff"));
  return withBands[0] || Object.keys(item.assets)[0];
}

function itemPath(item) { return `${encodeURIComponent(item.collection)}/${encodeURIComponent(item.id)}`; }

async function layerUrl(item) {
  const asset = imageAsset(item);
  const base = `/api/tiles/${itemPath(item)}/${encodeURIComponent(asset)}/{z}/{x}/{y}.png`;
  const rescale = encodeURIComponent($("rescale").value);
  const colormap = encodeURIComponent($("colormap").value);
  const kind = $("layer").value;
  if (kind === "rgb") return `${base}?bands=red,green,blue&rescale=${rescale}`;
  if (kind === "false") return `${base}?bands=nir,red,green&rescale=${rescale}`;
  if (kind === "band") return `${base}?bands=${encodeURIComponent($("band").value)}&rescale=${rescale}&colormap=${colormap}`;
  const expression = $("expression").value;
  await getJson(`/api/expression/check?key=${encodeURIComponent(item.collection)}&item_id=${encodeURIComponent(item.id)}` +
    `&asset=${encodeURIComponent(asset)}&expression=${encodeURIComponent(expression)}`);
  return `/api/expression/${itemPath(item)}/${encodeURIComponent(asset)}/{z}/{x}/{y}.png?expression=` +
    `${encodeURIComponent(expression)}&rescale=${rescale}&colormap=${colormap}`;
}

function legend(item) {
  const kind = $("layer").value;
  const lines = [];
  if (kind === "band" || kind === "expression") lines.push(`${$("colormap").value}: ${$("rescale").value.replace(",", " → ")}`);
  else lines.push(`${kind === "rgb" ? "red, green, blue" : "nir, red, green"}: ${$("rescale").value.replace(",", " → ")}`);
  if ($("quality").checked) lines.push("quality: water blue, shadow brown, snow cyan, cloud white");
  $("legend").textContent = lines.join(" · ");
  $("date-label").textContent = `${item.datetime.slice(0, 10)} ${item.sensor} ${item.tile || ""}`;
}

async function draw(fit) {
  const item = current();
  if (!item) return;
  say("");
  $("band-row").style.display = $("layer").value === "band" ? "" : "none";
  $("expression-row").style.display = $("layer").value === "expression" ? "" : "none";
  const named = item.assets[imageAsset(item)].bands;
  const bands = named.length ? named : ["1"];  // a one-band layer has no band names
  if ($("band").dataset.item !== item.id) {
    const chosen = $("band").value;
    $("band").innerHTML = bands.map((b) => `<option>${b}</option>`).join("");
    if (bands.includes(chosen)) $("band").value = chosen;
    else if (bands.includes("nir")) $("band").value = "nir";
    $("band").dataset.item = item.id;
  }
  const needed = { rgb: ["red", "green", "blue"], false: ["nir", "red", "green"] }[$("layer").value];
  if (needed && !needed.every((b) => bands.includes(b))) {
    say(`this item has no ${needed.filter((b) => !bands.includes(b)).join(", ")}: one band is shown`);
    $("layer").value = "band";
    $("band-row").style.display = "";
  }
  let url;
  try { url = await layerUrl(item); } catch (error) { say(error.message); return; }
  if (!$("message").textContent.startsWith("this item has no")) say("");
  if (layer) map.removeLayer(layer);
  layer = L.tileLayer(url, { maxZoom: 22, tileSize: 256, className: "musyq-layer" }).addTo(map);
  layer.on("tileerror", () => say("a tile could not be drawn"));
  if (overlay) { map.removeLayer(overlay); overlay = null; }
  if ($("quality").checked && item.assets.MASK) {
    overlay = L.tileLayer(`/api/quality/${itemPath(item)}/{z}/{x}/{y}.png`, { maxZoom: 22 }).addTo(map);
  }
  if (fit) map.fitBounds([[item.bbox[1], item.bbox[0]], [item.bbox[3], item.bbox[2]]]);
  legend(item);
  $("downloads").innerHTML = Object.keys(item.assets).map((k) =>
    `<a href="/api/download/${itemPath(item)}/${encodeURIComponent(k)}" download>${k}</a>`).join("") +
    `<a href="/api/collections/${itemPath(item).replace("/", "/items/")}" download>STAC item</a>` +
    `<a href="/api/clip/${itemPath(item)}/${encodeURIComponent(imageAsset(item))}?format=nc" download>` +
    `${imageAsset(item)} as NetCDF</a>`;
  clips();
}

function clips() {
  const item = current();
  if (!item || !box) { $("clips").innerHTML = ""; return; }
  const base = `/api/clip/${itemPath(item)}/${encodeURIComponent(imageAsset(item))}?bbox=${boxText()}`;
  $("clips").innerHTML = `Clip of the box: <a id="clip-tif" href="${base}&format=tif" download>GeoTIFF</a> ` +
    `<a id="clip-nc" href="${base}&format=nc" download>NetCDF</a>`;
}

function chart(series, band) {
  const svg = $("chart");
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const points = series.filter((p) => p.value !== null);
  if (!points.length) { svg.innerHTML = `<text x="10" y="20">no values</text>`; return; }
  const times = points.map((p) => Date.parse(p.datetime));
  const values = points.map((p) => p.value);
  const [t0, t1] = [Math.min(...times), Math.max(...times) + 1];
  const [v0, v1] = [Math.min(...values), Math.max(...values) + 1e-9];
  const x = (t) => 30 + (width - 40) * (t - t0) / (t1 - t0);
  const y = (v) => height - 20 - (height - 30) * (v - v0) / (v1 - v0);
  const colour = { observed: "#1b7837", flagged: "#b2182b", filled: "#2166ac" };
  svg.innerHTML = `<text x="${width - 130}" y="12">${band}, ${points.length} dates</text>` +
    `<text x="2" y="${y(v1) + 4}">${v1.toFixed(2)}</text><text x="2" y="${y(v0)}">${v0.toFixed(2)}</text>` +
    points.map((p, i) => `<circle class="point ${p.state}" cx="${x(times[i])}" cy="${y(p.value)}" r="3" ` +
      `fill="${colour[p.state]}"><title>${p.datetime.slice(0, 10)} ${p.sensor} ${p.value.toFixed(4)} ${p.state}</title></circle>`).join("");
}

$("draw").addEventListener("click", () => {
  drawing = {};
  map.dragging.disable();
  $("map").style.cursor = "crosshair";
  say("drag on the map to draw the box");
});
map.on("mousedown", (event) => {
  if (!drawing) return;
  drawing.start = event.latlng;
  if (box) map.removeLayer(box);
  box = L.rectangle(L.latLngBounds(event.latlng, event.latlng), { color: "#e66101", weight: 2 }).addTo(map);
});
map.on("mousemove", (event) => {
  if (drawing && drawing.start) box.setBounds(L.latLngBounds(drawing.start, event.latlng));
});
map.on("mouseup", () => {
  if (!drawing || !drawing.start) return;
  drawing = null;
  drewAt = Date.now();
  map.dragging.enable();
  $("map").style.cursor = "";
  $("box").textContent = boxText();
  say("");
  clips();
});

$("save-expression").addEventListener("click", async () => {
  const item = current();
  try {
    const saved = await getJson("/api/expression/save", { collection: item.collection, item: item.id,
      asset: imageAsset(item), expression: $("expression").value, name: $("product-name").value });
    say(`saved: ${saved.collection} / ${saved.item}`);
    await listCollections();
  } catch (error) { say(error.message); }
});

async function showOrders() {
  const orders = await getJson("/api/orders");
  const rows = [];
  for (const order of orders.slice(-5).reverse()) {
    const status = await getJson(`/api/orders/${order.id}`);
    const counts = Object.entries(status.counts).map(([k, n]) => `${n} ${k}`).join(", ");
    rows.push(`<div class="order ${status.state}" data-id="${order.id}">order ${order.id}: ${status.state}` +
      ` (${counts}) ${status.products.join(",")} ${status.start}..${status.end}</div>`);
  }
  $("order-list").innerHTML = rows.join("");
  if (orders.some((o) => o.state === "planned" || o.state === "running")) setTimeout(() => showOrders().then(listCollections), 3000);
}

$("order").addEventListener("click", async () => {
  if (!box) { say("draw a box first"); return; }
  try {
    const placed = await getJson("/api/orders", { bbox: boxText().split(",").map(Number), start: $("order-from").value,
      end: $("order-to").value, products: $("order-products").value.split(",").map((p) => p.trim()).filter(Boolean),
      resolution: Number($("order-resolution").value) });
    say(`order ${placed.id}: ${placed.scenes} scene(s), tiles ${placed.tiles.join(", ")}`);
    await showOrders();
  } catch (error) { say(error.message); }
});

map.on("click", async (event) => {
  const item = current();
  if (!item || drawing || Date.now() - drewAt < 400) return;  // the click that ends a box inspects nothing
  const { lat, lng } = event.latlng;
  if (marker) map.removeLayer(marker);
  marker = L.circleMarker([lat, lng], { radius: 5 }).addTo(map);
  const band = $("layer").value === "band" ? $("band").value : "nir";
  try {
    const point = await getJson(`/api/point/${itemPath(item)}?lon=${lng}&lat=${lat}`);
    const rows = Object.entries(point.values[imageAsset(item)] || {}).map(([k, v]) =>
      `<tr><td>${k}</td><td>${v === null ? "–" : v.toFixed(4)}</td></tr>`).join("");
    $("inspector").innerHTML = `<div>${lat.toFixed(5)}, ${lng.toFixed(5)} on ${point.datetime.slice(0, 10)}</div><table>${rows}</table>`;
    const series = await getJson(`/api/series?lon=${lng}&lat=${lat}&collections=${encodeURIComponent(item.collection)}` +
      `&asset=${encodeURIComponent(imageAsset(item))}&band=${encodeURIComponent(band)}` + (item.tile ? `&tile=${item.tile}` : ""));
    chart(series.series, band);
  } catch (error) { $("inspector").textContent = error.message; }
});

async function loadCollection() {
  items = await getJson(`/api/collections/${encodeURIComponent($("collection").value)}/items?limit=1000`);
  $("date").max = Math.max(items.length - 1, 0);
  $("date").value = 0;
  await draw(true);
}

async function listCollections() {
  const collections = await getJson("/api/collections");
  const chosen = $("collection").value;
  $("collection").innerHTML = collections.filter((c) => c.items).map((c) =>
    `<option value="${c.key}">${c.id} (${c.key}, ${c.items})</option>`).join("");
  if (chosen && collections.some((c) => c.key === chosen)) $("collection").value = chosen;
  else {  // a first look opens on reflectance rather than on the saved expressions
    const reflectance = collections.find((c) => c.items && c.key !== "expressions");
    if (reflectance) $("collection").value = reflectance.key;
  }
}

async function start() {
  await listCollections();
  await loadCollection();
  const config = await getJson("/api/config");
  $("orders").hidden = !config.orders;
  if (config.orders) await showOrders();
}

$("collection").addEventListener("change", loadCollection);
$("date").addEventListener("input", () => draw(false));
const STRETCH = { rgb: "0,0.3", false: "0,0.5", band: "0,0.5", expression: "-1,1" };
let shown = $("layer").value;
$("layer").addEventListener("change", () => {
  if ($("rescale").value === STRETCH[shown]) $("rescale").value = STRETCH[$("layer").value];  // the user's own stays
  shown = $("layer").value;
  draw(false);
});
for (const id of ["band", "rescale", "colormap", "quality"]) $(id).addEventListener("change", () => draw(false));
$("expression").addEventListener("change", () => draw(false));
start().catch((error) => say(error.message));
