/**
 * Mask painting for U-Net Studio (Streamlit Components v2, plain ES module, no build step).
 *
 * Why it works this way:
 * - The mask is a Uint16Array at the image's native resolution and every edit writes exact values (no
 *   anti-aliasing), so what the user paints is what training reads, pixel for pixel.
 * - The picture and the mask overlay are two canvases at native size inside one "stage" that is scaled and
 *   moved with a CSS transform; zoom and pan never redraw pixels, and a stroke redraws only its dirty rectangle.
 * - Undo/redo keeps per-action diffs (changed indices with before/after values), so a 2000x1500 mask does not
 *   keep whole copies.
 * - Streamlit calls the default export again whenever Python's data changes, with the same parentElement; one
 *   editor lives per parentElement and takes the new data (a new image_id resets it, a new mask_version loads
 *   the mask as one undoable change, a new picture for the same image_id only swaps the picture).
 * - After each finished action the whole mask goes to Python as an opaque PNG (R = low byte, G = high byte).
 */

const TOOLS = [
  { id: "brush", label: "Brush", key: "b" },
  { id: "eraser", label: "Eraser", key: "e" },
  { id: "lasso", label: "Lasso fill", key: "l" },
  { id: "pan", label: "Pan", key: null },
];
const ZOOM_STEP = 1.5;
const MIN_ZOOM = 0.02;
const MAX_ZOOM = 32;
const MAX_UNDO = 100; // steps kept while memory allows
const MIN_UNDO = 50; // steps kept whatever the memory
const UNDO_BYTES = 256 * 1024 * 1024;
// Object colours in instance mode: id k gets INSTANCE_PALETTE[(k - 1) % length].
const INSTANCE_PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
  [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
  [0, 0, 128], [128, 128, 128],
];

const editors = new WeakMap();

export default function mountMaskCanvas(component) {
  const { data, parentElement, setStateValue } = component;
  let editor = editors.get(parentElement);
  if (!editor) {
    editor = new MaskEditor(parentElement);
    editors.set(parentElement, editor);
  }
  editor.send = (value) => setStateValue("edit", value);
  editor.receive(data);
  // Streamlit runs this on unmount, and also at once when a mount raced a newer one; only an editor whose
  // element has left the page is destroyed, so a race never loses the user's mask and history.
  return () => {
    setTimeout(() => {
      if (!parentElement.isConnected && editors.get(parentElement) === editor) {
        editors.delete(parentElement);
        editor.destroy();
      }
    }, 0);
  };
}

/** An element with attributes and children, in one call. */
function el(tag, attrs = {}, children = []) {
  const node = tag === "svg" || tag === "polygon"
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

/** RGBA packed as one little-endian 32-bit pixel of an ImageData buffer. */
function packColour([r, g, b], alpha = 255) {
  return ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** A PNG data URL as an ImageBitmap with its values untouched (no colour management, no premultiplying). */
async function decodePng(dataUrl) {
  if (typeof dataUrl !== "string" || !dataUrl.startsWith("data:image/png;base64,")) {
    throw new Error("not a PNG data URL");
  }
  const binary = atob(dataUrl.slice(dataUrl.indexOf(",") + 1));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const blob = new Blob([bytes], { type: "image/png" });
  return createImageBitmap(blob, { premultiplyAlpha: "none", colorSpaceConversion: "none" });
}

/** Changed pixels of one action: indices with their values before and after, grown as the action runs. */
class Diff {
  constructor() {
    this.length = 0;
    this.indices = new Uint32Array(1024);
    this.before = new Uint16Array(1024);
    this.after = new Uint16Array(1024);
    this.box = null; // [x0, y0, x1, y1] inclusive, image pixels
  }

  push(index, before, after, x, y) {
    if (this.length === this.indices.length) this.grow();
    this.indices[this.length] = index;
    this.before[this.length] = before;
    this.after[this.length] = after;
    this.length++;
    const b = this.box;
    if (!b) this.box = [x, y, x, y];
    else {
      if (x < b[0]) b[0] = x;
      if (y < b[1]) b[1] = y;
      if (x > b[2]) b[2] = x;
      if (y > b[3]) b[3] = y;
    }
  }

  grow() {
    const size = this.indices.length * 2;
    for (const name of ["indices", "before", "after"]) {
      const bigger = new this[name].constructor(size);
      bigger.set(this[name]);
      this[name] = bigger;
    }
  }

  /** Trim the buffers to what is used, once the action is over. */
  seal() {
    this.indices = this.indices.slice(0, this.length);
    this.before = this.before.slice(0, this.length);
    this.after = this.after.slice(0, this.length);
    return this;
  }

  get bytes() {
    return this.length * 8;
  }
}

class MaskEditor {
  constructor(parent) {
    this.parent = parent;
    this.send = null;
    // Document state
    this.imageId = null;
    this.imageUrl = null;
    this.maskVersion = null;
    this.width = 0;
    this.height = 0;
    this.mask = null;
    this.ready = false;
    this.undoStack = [];
    this.redoStack = [];
    this.revision = 0;
    // Settings from Python
    this.classes = [];
    this.instances = false;
    this.settingsKey = null;
    this.pythonOpacity = null;
    this.lut = new Uint32Array(65536);
    // Tools
    this.tool = "brush";
    this.classIndex = 1;
    this.objectId = 0;
    this.newObjectPending = true;
    this.brushSize = 12;
    // View: stage position (viewport pixels) and scale; "fitted" refits on resize until the user zooms or pans
    this.view = { x: 0, y: 0, zoom: 1, fitted: true };
    this.pointer = null; // last pointer position in image coordinates, for the status line
    this.action = null; // the running stroke, lasso or pan
    this.spaceHeld = false;
    this.dirty = null;
    this.frame = 0;
    this.latestData = null;
    this.busy = false;
    this.destroyed = false;
    this.buildDom();
    this.bindEvents();
    this.updateStatus();
  }

  // -------------------------------------------------------------------------------------------------------------
  // DOM

  buildDom() {
    this.root = el("div", { class: "mc-root", tabindex: "0" });
    this.toolButtons = new Map();
    const tools = TOOLS.map((tool) => {
      const button = this.button(tool.label, () => this.setTool(tool.id));
      this.toolButtons.set(tool.id, button);
      return button;
    });
    this.undoButton = this.button("Undo", () => this.undo());
    this.redoButton = this.button("Redo", () => this.redo());
    const zoom = [
      this.button("Zoom in", () => this.zoomAtCentre(ZOOM_STEP)),
      this.button("Zoom out", () => this.zoomAtCentre(1 / ZOOM_STEP)),
      this.button("Fit", () => this.fit()),
    ];
    this.sizeInput = this.range("Brush size", 1, 200, this.brushSize, (value) => {
      this.brushSize = value;
      this.sizeValue.textContent = String(value);
      this.updateCursor();
    });
    this.sizeValue = el("span", { class: "mc-value" }, [String(this.brushSize)]);
    this.opacityInput = this.range("Mask opacity", 0, 100, 50, (value) => this.setOpacity(value / 100));
    this.classBar = el("div", { class: "mc-group mc-classes" });
    const toolbar = el("div", { class: "mc-toolbar", role: "toolbar" }, [
      el("div", { class: "mc-group" }, tools),
      el("div", { class: "mc-group" }, [this.undoButton, this.redoButton]),
      el("div", { class: "mc-group" }, zoom),
      el("label", { class: "mc-group mc-slider" }, ["Size", this.sizeInput, this.sizeValue]),
      el("label", { class: "mc-group mc-slider" }, ["Opacity", this.opacityInput]),
      this.classBar,
    ]);

    this.imageCanvas = el("canvas", { class: "mc-image", "data-testid": "mask-canvas-image" });
    this.maskCanvas = el("canvas", { class: "mc-mask", "data-testid": "mask-canvas" });
    this.lassoShape = el("polygon", { class: "mc-lasso-shape" });
    this.lassoSvg = el("svg", { class: "mc-lasso", preserveAspectRatio: "none" }, [this.lassoShape]);
    this.stage = el("div", { class: "mc-stage" }, [this.imageCanvas, this.maskCanvas, this.lassoSvg]);
    this.cursor = el("div", { class: "mc-cursor" });
    this.viewport = el("div", { class: "mc-viewport", "data-testid": "mask-canvas-viewport" }, [
      this.stage,
      this.cursor,
    ]);
    this.status = el("div", { class: "mc-status", "data-testid": "mask-canvas-status", "aria-live": "off" });
    this.root.append(toolbar, this.viewport, this.status);
    this.parent.append(this.root);
    this.imageContext = this.imageCanvas.getContext("2d");
    this.maskContext = this.maskCanvas.getContext("2d");
    this.updateToolbar();
  }

  button(label, onClick) {
    const button = el("button", { type: "button", "aria-label": label, title: label, class: "mc-button" }, [label]);
    button.addEventListener("click", onClick);
    return button;
  }

  range(label, min, max, value, onInput) {
    const input = el("input", {
      type: "range", min: String(min), max: String(max), value: String(value), "aria-label": label, title: label,
    });
    input.addEventListener("input", () => onInput(Number(input.value)));
    return input;
  }

  /** One button per class (index >= 1) in semantic mode; "New object" and the current id in instance mode. */
  buildClassBar() {
    this.classBar.replaceChildren();
    this.classButtons = new Map();
    if (this.instances) {
      this.objectLabel = el("span", { class: "mc-value mc-object" });
      this.classBar.append(this.button("New object", () => this.startNewObject()), this.objectLabel);
    } else {
      this.classes.forEach(([name, colour], index) => {
        if (index === 0) return;
        const swatch = el("span", { class: "mc-swatch" });
        swatch.style.background = `rgb(${colour.join(",")})`;
        const button = el("button", { type: "button", "aria-label": name, title: name, class: "mc-button" }, [
          swatch,
          name,
        ]);
        button.addEventListener("click", () => this.selectClass(index));
        this.classButtons.set(index, button);
        this.classBar.append(button);
      });
    }
    this.updateToolbar();
  }

  updateToolbar() {
    for (const [id, button] of this.toolButtons) button.setAttribute("aria-pressed", String(id === this.tool));
    for (const [index, button] of this.classButtons ?? []) {
      button.setAttribute("aria-pressed", String(index === this.classIndex));
    }
    if (this.objectLabel) {
      this.objectLabel.textContent = this.newObjectPending ? "object: new" : `object: ${this.objectId}`;
    }
    this.undoButton.disabled = this.undoStack.length === 0;
    this.redoButton.disabled = this.redoStack.length === 0;
    this.viewport.dataset.tool = this.tool;
    this.updateStatus();
  }

  updateStatus() {
    const zoom = `zoom ${Math.round(this.view.zoom * 100)}%`;
    const p = this.pointer;
    const inside = p && this.ready && p.x >= 0 && p.y >= 0 && p.x < this.width && p.y < this.height;
    const where = inside ? `x ${Math.floor(p.x)}, y ${Math.floor(p.y)}` : "x –, y –";
    let what;
    if (this.instances) what = this.newObjectPending ? "object new" : `object ${this.objectId}`;
    else what = `class ${this.classes[this.classIndex]?.[0] ?? this.classIndex}`;
    if (this.tool === "eraser") what = "eraser";
    this.status.textContent = `${zoom} · ${where} · ${what}`;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Data from Python

  receive(data) {
    this.latestData = data;
    if (!this.busy) this.drain();
  }

  /** Apply data in arrival order, one at a time, keeping only the newest while an older one loads. */
  async drain() {
    this.busy = true;
    try {
      while (this.latestData && !this.destroyed) {
        const data = this.latestData;
        this.latestData = null;
        try {
          await this.apply(data);
        } catch (error) {
          console.error("mask canvas: could not apply the data", error);
        }
      }
    } finally {
      this.busy = false;
    }
  }

  async apply(data) {
    if (!data || typeof data !== "object" || typeof data.image_id !== "string") return;
    this.revision = Math.max(this.revision, Number(data.revision_base) || 0);
    this.applySettings(data);
    if (data.image_id !== this.imageId) {
      await this.loadDocument(data);
      return;
    }
    if (data.image !== this.imageUrl) await this.swapPicture(data.image);
    if (data.mask_version !== this.maskVersion) await this.replaceMask(data.mask, data.mask_version);
  }

  applySettings(data) {
    const classes = Array.isArray(data.classes) ? data.classes : [];
    const settingsKey = JSON.stringify([classes, Boolean(data.instances)]);
    if (settingsKey !== this.settingsKey) {
      this.settingsKey = settingsKey;
      this.classes = classes;
      this.instances = Boolean(data.instances);
      if (this.classIndex >= classes.length || this.classIndex < 1) this.classIndex = classes.length > 1 ? 1 : 0;
      this.buildLut();
      this.buildClassBar();
      if (this.ready) this.renderRect(0, 0, this.width - 1, this.height - 1);
    }
    const opacity = Number(data.opacity);
    if (Number.isFinite(opacity) && opacity !== this.pythonOpacity) {
      this.pythonOpacity = opacity;
      this.opacityInput.value = String(Math.round(opacity * 100));
      this.setOpacity(opacity);
    }
  }

  buildLut() {
    const lut = this.lut;
    lut.fill(packColour([128, 128, 128])); // values without a class show grey
    if (this.instances) {
      for (let id = 1; id < lut.length; id++) lut[id] = packColour(INSTANCE_PALETTE[(id - 1) % INSTANCE_PALETTE.length]);
    } else {
      this.classes.forEach(([, colour], index) => {
        lut[index] = packColour(colour);
      });
    }
    lut[0] = 0; // background is transparent
  }

  /** A new image: everything resets (mask, history, zoom, current object). */
  async loadDocument(data) {
    this.ready = false;
    this.viewport.dataset.ready = "false";
    this.abortAction();
    const width = Math.max(1, Math.floor(Number(data.width) || 1));
    const height = Math.max(1, Math.floor(Number(data.height) || 1));
    const [picture, mask] = await Promise.all([
      decodePng(data.image).catch((error) => console.warn("mask canvas: bad image", error)),
      this.readMask(data.mask, width, height),
    ]);
    this.imageId = data.image_id;
    this.imageUrl = data.image;
    this.maskVersion = data.mask_version;
    this.viewport.dataset.maskVersion = String(data.mask_version);
    this.width = width;
    this.height = height;
    this.mask = mask;
    this.undoStack = [];
    this.redoStack = [];
    this.newObjectPending = true;
    this.objectId = 0;
    for (const canvas of [this.imageCanvas, this.maskCanvas]) {
      canvas.width = width;
      canvas.height = height;
    }
    this.stage.style.width = `${width}px`;
    this.stage.style.height = `${height}px`;
    this.lassoSvg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.overlay = this.maskContext.createImageData(width, height);
    this.overlayPixels = new Uint32Array(this.overlay.data.buffer);
    this.drawPicture(picture);
    this.ready = true;
    this.viewport.dataset.imageId = String(data.image_id); // for tests: which image painting now goes to
    this.viewport.dataset.ready = "true"; // for tests: painting works from now on
    this.renderRect(0, 0, width - 1, height - 1);
    this.fit();
    this.updateToolbar();
  }

  drawPicture(picture) {
    this.imageContext.clearRect(0, 0, this.width, this.height);
    if (!picture) return;
    if (picture.width !== this.width || picture.height !== this.height) {
      console.warn("mask canvas: the picture's size differs from the mask's; it is stretched");
    }
    this.imageContext.drawImage(picture, 0, 0, this.width, this.height);
    picture.close?.();
  }

  /** Same image_id, new picture (e.g. contrast changed): swap it, keep mask, zoom and history. */
  async swapPicture(url) {
    try {
      const picture = await decodePng(url);
      this.drawPicture(picture);
      this.imageUrl = url;
    } catch (error) {
      console.warn("mask canvas: bad image", error);
      this.imageUrl = url; // do not retry the same bad picture on every rerun
    }
  }

  /** A mask from Python (e.g. filled from a prediction): loaded as one undoable change. */
  async replaceMask(url, version) {
    const next = await this.readMask(url, this.width, this.height);
    this.maskVersion = version;
    this.abortAction();
    const mask = this.mask;
    const diff = new Diff();
    const width = this.width;
    for (let i = 0; i < mask.length; i++) {
      if (mask[i] !== next[i]) {
        diff.push(i, mask[i], next[i], i % width, (i / width) | 0);
        mask[i] = next[i];
      }
    }
    if (diff.length) this.record(diff.seal());
    this.newObjectPending = true; // the new mask may already use the current object's id
    this.renderRect(0, 0, this.width - 1, this.height - 1);
    this.viewport.dataset.maskVersion = String(version); // for tests: the load is done
    this.updateToolbar();
  }

  /** A mask PNG (R low byte, G high byte) as a Uint16Array; all zeros, with a warning, when it is unusable. */
  async readMask(url, width, height) {
    const mask = new Uint16Array(width * height);
    try {
      const bitmap = await decodePng(url);
      if (bitmap.width !== width || bitmap.height !== height) throw new Error("the mask's size is wrong");
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
      const rgba = context.getImageData(0, 0, width, height).data;
      for (let i = 0, j = 0; i < mask.length; i++, j += 4) mask[i] = rgba[j] | (rgba[j + 1] << 8);
    } catch (error) {
      console.warn("mask canvas: the mask could not be read; starting empty", error);
    }
    return mask;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Rendering

  /** Colour the mask's pixels in [x0..x1] x [y0..y1] (inclusive) and put just that rectangle on the canvas. */
  renderRect(x0, y0, x1, y1) {
    if (!this.ready) return;
    x0 = clamp(Math.floor(x0), 0, this.width - 1);
    y0 = clamp(Math.floor(y0), 0, this.height - 1);
    x1 = clamp(Math.ceil(x1), 0, this.width - 1);
    y1 = clamp(Math.ceil(y1), 0, this.height - 1);
    if (x1 < x0 || y1 < y0) return;
    const { mask, lut, overlayPixels: out, width } = this;
    for (let y = y0; y <= y1; y++) {
      const row = y * width;
      for (let i = row + x0, end = row + x1; i <= end; i++) out[i] = lut[mask[i]];
    }
    this.maskContext.putImageData(this.overlay, 0, 0, x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }

  /** Remember a changed rectangle and draw it on the next animation frame (many pointer events, one draw). */
  markDirty(box) {
    if (!box) return;
    const d = this.dirty;
    this.dirty = d
      ? [Math.min(d[0], box[0]), Math.min(d[1], box[1]), Math.max(d[2], box[2]), Math.max(d[3], box[3])]
      : [...box];
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    const d = this.dirty;
    this.dirty = null;
    if (d) this.renderRect(d[0], d[1], d[2], d[3]);
  }

  setOpacity(opacity) {
    this.maskCanvas.style.opacity = String(clamp(opacity, 0, 1));
  }

  // -------------------------------------------------------------------------------------------------------------
  // View: zoom and pan

  applyView() {
    const { x, y, zoom } = this.view;
    this.stage.style.transform = `translate(${x}px, ${y}px) scale(${zoom})`;
    this.updateCursor();
    this.updateStatus();
  }

  fit() {
    const box = this.viewport.getBoundingClientRect();
    const vw = this.viewport.clientWidth || box.width;
    const vh = this.viewport.clientHeight || box.height;
    this.view.fitted = true;
    if (!this.ready || vw <= 0 || vh <= 0) return;
    const zoom = clamp(Math.min(vw / this.width, vh / this.height), MIN_ZOOM, MAX_ZOOM);
    this.view.zoom = zoom;
    this.view.x = (vw - this.width * zoom) / 2;
    this.view.y = (vh - this.height * zoom) / 2;
    this.applyView();
  }

  /** Scale by `factor`, keeping the image point under viewport point (ax, ay) where it is. */
  zoomAt(factor, ax, ay) {
    const v = this.view;
    const zoom = clamp(v.zoom * factor, MIN_ZOOM, MAX_ZOOM);
    v.x = ax - ((ax - v.x) * zoom) / v.zoom;
    v.y = ay - ((ay - v.y) * zoom) / v.zoom;
    v.zoom = zoom;
    v.fitted = false;
    this.applyView();
  }

  zoomAtCentre(factor) {
    this.zoomAt(factor, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
  }

  /** Viewport coordinates (pixels from the viewport's inner top-left) of a pointer event. */
  viewportPoint(event) {
    const box = this.viewport.getBoundingClientRect();
    return { x: event.clientX - box.left - this.viewport.clientLeft, y: event.clientY - box.top - this.viewport.clientTop };
  }

  /** Image coordinates (continuous: pixel i spans [i, i + 1)) of a pointer event. */
  imagePoint(event) {
    const p = this.viewportPoint(event);
    return { x: (p.x - this.view.x) / this.view.zoom, y: (p.y - this.view.y) / this.view.zoom };
  }

  /** The brush outline that follows the pointer, at the brush's size on screen. */
  updateCursor() {
    const p = this.pointer;
    const painting = this.tool === "brush" || this.tool === "eraser";
    if (!p || !painting || !this.ready || this.spaceHeld) {
      this.cursor.style.display = "none";
      return;
    }
    const diameter = Math.max(this.brushSize * this.view.zoom, 3);
    const cx = this.view.x + p.x * this.view.zoom;
    const cy = this.view.y + p.y * this.view.zoom;
    Object.assign(this.cursor.style, {
      display: "block",
      width: `${diameter}px`,
      height: `${diameter}px`,
      transform: `translate(${cx - diameter / 2}px, ${cy - diameter / 2}px)`,
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Events

  bindEvents() {
    const on = (target, type, handler, options) => target.addEventListener(type, handler, options);
    on(this.viewport, "pointerdown", (e) => this.onPointerDown(e));
    on(this.viewport, "pointermove", (e) => this.onPointerMove(e));
    on(this.viewport, "pointerup", (e) => this.onPointerUp(e));
    on(this.viewport, "pointercancel", (e) => this.onPointerUp(e));
    on(this.viewport, "lostpointercapture", (e) => this.onPointerUp(e));
    on(this.viewport, "pointerleave", () => {
      this.pointer = null;
      this.updateCursor();
      this.updateStatus();
    });
    on(this.viewport, "wheel", (e) => this.onWheel(e), { passive: false });
    on(this.viewport, "mousedown", (e) => e.button === 1 && e.preventDefault()); // no middle-click autoscroll
    on(this.viewport, "auxclick", (e) => e.preventDefault());
    on(this.viewport, "contextmenu", (e) => e.preventDefault());
    on(this.root, "keydown", (e) => this.onKeyDown(e));
    on(this.root, "keyup", (e) => this.onKeyUp(e));
    on(this.root, "focusout", () => {
      this.spaceHeld = false; // its keyup may go elsewhere
      this.viewport.classList.remove("mc-space");
    });
    this.resizeObserver = new ResizeObserver(() => {
      try {
        if (this.view.fitted) this.fit();
        else this.applyView();
      } catch (error) {
        console.warn("mask canvas: resize", error);
      }
    });
    this.resizeObserver.observe(this.viewport);
  }

  onPointerDown(event) {
    this.root.focus({ preventScroll: true });
    if (this.action) return;
    const pan = event.button === 1 || (event.button === 0 && (this.tool === "pan" || this.spaceHeld));
    if (!pan && (event.button !== 0 || !this.ready)) return;
    event.preventDefault();
    this.viewport.setPointerCapture(event.pointerId);
    if (pan) {
      const p = this.viewportPoint(event);
      this.action = { kind: "pan", pointerId: event.pointerId, start: p, view: { ...this.view } };
      this.viewport.classList.add("mc-panning");
      return;
    }
    const point = this.imagePoint(event);
    if (this.tool === "lasso") this.beginLasso(event.pointerId, point);
    else this.beginStroke(event.pointerId, point);
  }

  onPointerMove(event) {
    const point = this.imagePoint(event);
    this.pointer = point;
    const action = this.action;
    if (action && action.pointerId === event.pointerId) {
      if (action.kind === "pan") {
        const p = this.viewportPoint(event);
        this.view.x = action.view.x + p.x - action.start.x;
        this.view.y = action.view.y + p.y - action.start.y;
        this.view.fitted = false;
        this.applyView();
        return;
      }
      // Coalesced events carry the pointer positions the browser merged into this one.
      const events = event.getCoalescedEvents?.() ?? [];
      const points = events.length ? events.map((e) => this.imagePoint(e)) : [point];
      if (action.kind === "stroke") for (const p of points) this.extendStroke(p);
      else for (const p of points) this.extendLasso(p);
    }
    this.updateCursor();
    this.updateStatus();
  }

  onPointerUp(event) {
    const action = this.action;
    if (!action || action.pointerId !== event.pointerId) return;
    this.action = null;
    if (this.viewport.hasPointerCapture(event.pointerId)) this.viewport.releasePointerCapture(event.pointerId);
    if (action.kind === "pan") this.viewport.classList.remove("mc-panning");
    else if (action.kind === "stroke") this.finishAction(action.diff);
    else if (action.kind === "lasso") this.finishLasso(action);
  }

  onWheel(event) {
    if (!this.ready) return;
    event.preventDefault();
    const unit = event.deltaMode === 1 ? 0.05 : event.deltaMode === 2 ? 1 : 0.0015; // lines, pages, pixels
    const p = this.viewportPoint(event);
    this.zoomAt(Math.exp(-event.deltaY * unit), p.x, p.y);
  }

  onKeyDown(event) {
    const key = event.key.toLowerCase();
    const ctrl = event.ctrlKey || event.metaKey;
    // Space held pans, except on the toolbar's buttons and sliders, where it keeps its usual meaning.
    if (key === " " && !event.target.closest?.("button, input")) {
      event.preventDefault(); // no page scroll
      this.spaceHeld = true;
      this.viewport.classList.add("mc-space");
      this.updateCursor();
      return;
    }
    if (ctrl && key === "z") {
      event.preventDefault();
      if (event.shiftKey) this.redo();
      else this.undo();
    } else if (ctrl && key === "y") {
      event.preventDefault();
      this.redo();
    } else if (!ctrl && !event.altKey) {
      const tool = TOOLS.find((t) => t.key === key);
      if (tool) {
        event.preventDefault();
        this.setTool(tool.id);
      }
    }
  }

  onKeyUp(event) {
    if (event.key === " " && this.spaceHeld) {
      event.preventDefault();
      this.spaceHeld = false;
      this.viewport.classList.remove("mc-space");
      this.updateCursor();
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Tools

  setTool(tool) {
    this.tool = tool;
    this.updateToolbar();
    this.updateCursor();
  }

  selectClass(index) {
    this.classIndex = index;
    if (this.tool === "eraser" || this.tool === "pan") this.tool = "brush";
    this.updateToolbar();
  }

  startNewObject() {
    this.newObjectPending = true;
    if (this.tool === "eraser" || this.tool === "pan") this.tool = "brush";
    this.updateToolbar();
  }

  /** The value the next paint writes: the class, the current object (a new one when asked for), or 0 erasing. */
  paintValue() {
    if (this.tool === "eraser") return 0;
    if (!this.instances) return this.classIndex;
    if (this.newObjectPending || this.objectId === 0) {
      const mask = this.mask;
      let max = 0;
      for (let i = 0; i < mask.length; i++) if (mask[i] > max) max = mask[i];
      this.objectId = Math.min(max + 1, 65535);
      this.newObjectPending = false;
      this.updateToolbar();
    }
    return this.objectId;
  }

  /** Write `value` at pixel (x, y), recording the change once. */
  setPixel(diff, value, x, y) {
    const i = y * this.width + x;
    const before = this.mask[i];
    if (before !== value) {
      this.mask[i] = value;
      diff.push(i, before, value, x, y);
    }
  }

  beginStroke(pointerId, point) {
    const value = this.paintValue();
    const diff = new Diff();
    this.action = { kind: "stroke", pointerId, diff, value, last: point };
    this.paintSegment(diff, value, point, point);
  }

  extendStroke(point) {
    const action = this.action;
    this.paintSegment(action.diff, action.value, action.last, point);
    action.last = point;
  }

  /**
   * Every pixel whose centre lies within brush size / 2 of the segment a-b: the union of the discs stamped
   * along it, so a fast stroke leaves no gaps. The pixel under the pointer is always painted (brush size 1).
   */
  paintSegment(diff, value, a, b) {
    const r = this.brushSize / 2;
    const { width, height } = this;
    const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - r));
    const x1 = Math.min(width - 1, Math.ceil(Math.max(a.x, b.x) + r));
    const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - r));
    const y1 = Math.min(height - 1, Math.ceil(Math.max(a.y, b.y) + r));
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const length2 = dx * dx + dy * dy;
    const r2 = r * r;
    for (let y = y0; y <= y1; y++) {
      const py = y + 0.5 - a.y;
      for (let x = x0; x <= x1; x++) {
        const px = x + 0.5 - a.x;
        const t = length2 > 0 ? clamp((px * dx + py * dy) / length2, 0, 1) : 0;
        const ex = px - t * dx;
        const ey = py - t * dy;
        if (ex * ex + ey * ey <= r2) this.setPixel(diff, value, x, y);
      }
    }
    for (const p of [a, b]) {
      const x = Math.floor(p.x);
      const y = Math.floor(p.y);
      if (x >= 0 && y >= 0 && x < width && y < height) this.setPixel(diff, value, x, y);
    }
    this.markDirty([x0, y0, x1, y1]);
  }

  beginLasso(pointerId, point) {
    this.action = { kind: "lasso", pointerId, points: [point] };
    this.drawLasso();
  }

  extendLasso(point) {
    const points = this.action.points;
    const last = points[points.length - 1];
    const minStep = 0.5 / this.view.zoom; // half a screen pixel
    if (Math.abs(point.x - last.x) < minStep && Math.abs(point.y - last.y) < minStep) return;
    points.push(point);
    this.drawLasso();
  }

  drawLasso() {
    const points = this.action?.kind === "lasso" ? this.action.points : [];
    this.lassoShape.setAttribute("points", points.map((p) => `${p.x},${p.y}`).join(" "));
  }

  finishLasso(action) {
    this.lassoShape.setAttribute("points", "");
    if (action.points.length < 3) return;
    const diff = new Diff();
    this.fillPolygon(diff, this.paintValue(), action.points);
    this.finishAction(diff);
  }

  /** Fill the closed polygon's interior (even-odd rule; pixels whose centres are inside) with `value`. */
  fillPolygon(diff, value, points) {
    const y0 = Math.max(0, Math.floor(points.reduce((low, p) => Math.min(low, p.y), Infinity)));
    const y1 = Math.min(this.height - 1, Math.ceil(points.reduce((high, p) => Math.max(high, p.y), -Infinity)));
    const crossings = [];
    for (let y = y0; y <= y1; y++) {
      const sy = y + 0.5;
      crossings.length = 0;
      for (let k = 0, j = points.length - 1; k < points.length; j = k++) {
        const a = points[j];
        const b = points[k];
        if (a.y <= sy !== b.y <= sy) crossings.push(a.x + ((sy - a.y) * (b.x - a.x)) / (b.y - a.y));
      }
      crossings.sort((p, q) => p - q);
      for (let k = 0; k + 1 < crossings.length; k += 2) {
        const from = Math.max(0, Math.ceil(crossings[k] - 0.5));
        const to = Math.min(this.width - 1, Math.floor(crossings[k + 1] - 0.5));
        for (let x = from; x <= to; x++) this.setPixel(diff, value, x, y);
      }
    }
  }

  abortAction() {
    const action = this.action;
    this.action = null;
    if (action?.kind === "stroke" && action.diff.length) this.finishAction(action.diff);
    this.lassoShape.setAttribute("points", "");
  }

  // -------------------------------------------------------------------------------------------------------------
  // History and saving

  /**
   * A finished stroke or fill: draw it, make it undoable and send the mask. The diff's own box is drawn, not only
   * what the action marked dirty: a lasso fill writes the mask in one go and marks nothing while it runs.
   */
  finishAction(diff) {
    this.markDirty(diff.box);
    this.flush();
    if (!diff.length) return;
    this.record(diff.seal());
    this.updateToolbar();
    this.queueSend();
  }

  record(diff) {
    this.undoStack.push(diff);
    this.redoStack = [];
    let bytes = this.undoStack.reduce((sum, d) => sum + d.bytes, 0);
    while (
      this.undoStack.length > MAX_UNDO ||
      (this.undoStack.length > MIN_UNDO && bytes > UNDO_BYTES)
    ) {
      bytes -= this.undoStack.shift().bytes;
    }
  }

  undo() {
    this.step(this.undoStack, this.redoStack, "before");
  }

  redo() {
    this.step(this.redoStack, this.undoStack, "after");
  }

  /** Move one diff from `from` to `to`, writing its `side` values back into the mask. */
  step(from, to, side) {
    if (!this.ready || this.action || !from.length) return;
    const diff = from.pop();
    const { indices } = diff;
    const values = diff[side];
    for (let k = 0; k < indices.length; k++) this.mask[indices[k]] = values[k];
    to.push(diff);
    if (diff.box) this.renderRect(...diff.box);
    this.updateToolbar();
    this.queueSend();
  }

  /** Send the whole mask once the browser has drawn the action (the PNG encoding takes a moment on big images). */
  queueSend() {
    const imageId = this.imageId;
    setTimeout(() => {
      if (this.destroyed || imageId !== this.imageId || !this.send || !this.mask) return;
      try {
        this.revision += 1;
        this.send({ image_id: imageId, revision: this.revision, mask: this.encodeMask() });
      } catch (error) {
        console.error("mask canvas: could not send the mask", error);
      }
    }, 0);
  }

  /** The mask as an opaque PNG data URL: R = low byte, G = high byte, B = 0, A = 255. */
  encodeMask() {
    const { width, height, mask } = this;
    const canvas = el("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d");
    const pixels = context.createImageData(width, height);
    const out = new Uint32Array(pixels.data.buffer);
    for (let i = 0; i < mask.length; i++) out[i] = 0xff000000 | mask[i]; // little-endian: R, G from the value
    context.putImageData(pixels, 0, 0);
    return canvas.toDataURL("image/png");
  }

  destroy() {
    this.destroyed = true;
    this.resizeObserver?.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.root.remove();
  }
}
