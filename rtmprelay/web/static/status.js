// The status page: one row per live stream, redrawn from /api/streams every second.
// Rows are kept by stream path and updated in place, so a preview keeps playing
// while its figures change. Everything a peer sent (names, metadata, details)
// is put in the page as text, never as HTML.
"use strict";

(() => {
  const POLL_MS = 1000;
  const RETRY_PREVIEW_MS = 5000;
  const tbody = document.querySelector("#streams tbody");
  const summary = document.getElementById("summary");
  const connection = document.getElementById("connection");
  const empty = document.getElementById("empty");
  const rows = new Map(); // path -> Row
  // A preview plays only while its row is on screen: a page of many streams
  // must not run a decoder for each.
  const observer = "IntersectionObserver" in window ? new IntersectionObserver(onVisibility, { rootMargin: "200px" }) : null;

  // -- small helpers -------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function list(items) {
    const ul = el("ul");
    for (const item of items) {
      const li = el("li");
      if (typeof item === "string") li.textContent = item;
      else li.append(item);
      ul.append(li);
    }
    return ul;
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function bitrate(bitsPerSecond) {
    if (!isNumber(bitsPerSecond)) return "–";
    if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(2)} Mbit/s`;
    return `${Math.round(bitsPerSecond / 1e3)} kbit/s`;
  }

  function fixed(value, digits, unit) {
    return isNumber(value) ? `${value.toFixed(digits)}${unit}` : "–";
  }

  function words(name) {
    return String(name).replace(/_/g, " ");
  }

  function plural(count, one, many) {
    return `${count} ${count === 1 ? one : many || one + "s"}`;
  }

  // -- what each cell says -------------------------------------------------------------

  function streamCell(stream) {
    const meta = stream.metadata || {};
    const parts = [];
    if (isNumber(meta.width) && isNumber(meta.height)) parts.push(`${meta.width}×${meta.height}`);
    if (isNumber(meta.framerate)) parts.push(`${meta.framerate} fps out`);
    const counters = stream.counters || {};
    if (isNumber(counters.video_messages)) parts.push(`${counters.video_messages} video / ${counters.audio_messages} audio sent`);
    return [el("div", "path", stream.path), el("div", "dim", parts.join(" · "))];
  }

  function driftItems(stream) {
    // A/V drift, when the relay measures it: any field named *drift* (in ms or s).
    const found = [];
    for (const source of [stream, stream.cleaner || {}]) {
      for (const [key, value] of Object.entries(source)) {
        if (!/drift/i.test(key) || !isNumber(value)) continue;
        const unit = /_ms$/.test(key) ? " ms" : /_s$/.test(key) ? " s" : "";
        found.push(`A/V drift ${value}${unit}`);
      }
    }
    return found;
  }

  function inputCell(stream) {
    const c = stream.cleaner;
    if (!c) return [el("span", "dim", "not measured (cleaning is off)")];
    const gop = isNumber(c.input_keyframe_interval_s)
      ? `keyframes every ${c.input_keyframe_interval_s.toFixed(2)} s (max ${fixed(c.max_input_keyframe_interval_s, 2, " s")})`
      : "no keyframe interval yet";
    const rate = isNumber(c.input_bitrate) ? bitrate(c.input_bitrate) : "bitrate: measuring…";
    const fps = isNumber(c.input_fps) ? fixed(c.input_fps, 1, " fps") : "frame rate: measuring…";
    return [list([rate, fps, gop, ...driftItems(stream)])];
  }

  function foundCell(stream) {
    if (!stream.cleaner) return [el("span", "dim", "not cleaned (--no-clean)")];
    const broken = (stream.verdicts || []).filter((v) => v.broken);
    if (!broken.length) return [el("span", "ok", "nothing wrong so far")];
    return [
      list(
        broken.map((v) => {
          const item = el("span", v.repaired ? "repaired" : "broken", `${words(v.rule)}${v.repaired ? "" : " (not repaired)"}`);
          const wrap = el("span");
          wrap.append(item);
          if (v.detail) wrap.append(el("span", "dim", `: ${v.detail}`));
          return wrap;
        }),
      ),
    ];
  }

  function repairedCell(stream) {
    const c = stream.cleaner;
    if (!c) return [el("span", "dim", "–")];
    const items = [];
    const add = (count, text) => {
      if (isNumber(count) && count > 0) items.push(`${count} ${text}`);
    };
    add(c.dropped, "frames dropped (too fast)");
    add(c.duplicated, "frames repeated (too slow)");
    add(c.retimed, "frames retimed");
    add(c.squeezed, "frames with squashed decoding times spread within their slot");
    add(c.dropped_for_lag, "frames dropped (far behind)");
    add(c.dropped_before_keyframe, "frames dropped before the first keyframe");
    add(c.keyframes_relabelled, "keyframes relabelled");
    add(c.silence_inserted, "silent audio frames inserted");
    add(c.audio_dropped, "audio frames dropped (audio ran fast)");
    for (const [track, kinds] of Object.entries(c.repairs || {})) {
      for (const [kind, count] of Object.entries(kinds || {})) add(count, `${track} timestamp ${words(kind)}s re-based`);
    }
    if (isNumber(c.long_gops) && c.long_gops > 0) items.push(`${plural(c.long_gops, "GOP")} too long (needs re-encoding)`);
    if (!items.length) return [el("span", "ok", "nothing needed")];
    return [list(items)];
  }

  function upstreamCell(stream) {
    // /api/streams names each destination with its stream key masked.
    const upstreams = [].concat(stream.upstreams ?? stream.upstream ?? []).filter((u) => u && typeof u === "object");
    if (!upstreams.length) return [el("span", "dim", "none reported")];
    return [
      list(
        upstreams.map((u) => {
          const wrap = el("div");
          const state = String(u.state ?? "unknown");
          wrap.append(el("span", `state state-${state.replace(/[^a-z_-]/gi, "-")}`, words(state)));
          const where = u.destination ?? u.url;
          if (where) wrap.append(el("div", "dim", String(where)));
          const details = Object.entries(u)
            .filter(([key, value]) => !["state", "destination", "url"].includes(key) && value !== null && typeof value !== "object")
            .map(([key, value]) => `${words(key)}: ${value}`);
          if (u.queue && isNumber(u.queue.fill) && u.queue.fill > 0) details.push(`queue ${Math.round(u.queue.fill * 100)} % full`);
          if (details.length) wrap.append(el("div", "dim", details.join(" · ")));
          // the last failure, in the relay's words (which certificate, which application, ...)
          if (u.last_error && u.last_error.message) wrap.append(el("div", "bad", `last error: ${u.last_error.message}`));
          return wrap;
        }),
      ),
    ];
  }

  function hlsFigures(hls) {
    const queue = hls.queue || {};
    const parts = [`${plural(hls.segments ?? 0, "segment")}`, `${hls.mode}, ${hls.container}`];
    if (isNumber(queue.frames_queued)) parts.push(`queue ${queue.frames_queued} frames`);
    const dropped = (queue.video_dropped || 0) + (queue.audio_dropped || 0);
    if (dropped) parts.push(`${dropped} dropped (encoder behind)`);
    return parts.join(" · ");
  }

  // -- the preview: hls.js into a muted <video> ----------------------------------------

  class Preview {
    constructor(cell, path) {
      this.cell = cell;
      this.path = path;
      this.slot = el("div");
      this.note = el("div", "dim");
      this.cell.append(this.slot, this.note);
      this.video = null;
      this.player = null; // an Hls instance, or "native"
      this.visible = observer === null;
      this.retryAt = 0;
      this.hls = null;
    }

    update(hls) {
      this.hls = hls;
      if (!hls) {
        this.stop();
        this.say("HLS is off for this stream: no preview");
        return;
      }
      if (!hls.ready || !hls.playlist) {
        this.stop();
        this.say(`waiting for the first segment… (${hlsFigures(hls)})`);
        return;
      }
      if (!this.visible) {
        this.stop();
        this.say(`preview stopped while out of view (${hlsFigures(hls)})`);
        return;
      }
      this.say(hlsFigures(hls));
      if (this.player || Date.now() < this.retryAt) return;
      this.start(`hls/${hls.playlist.split("/").map(encodeURIComponent).join("/")}`);
    }

    start(url) {
      const video = el("video");
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      video.controls = true;
      video.dataset.path = this.path;
      video.addEventListener("error", () => this.fail(video.error ? `media error ${video.error.code}` : "media error"));
      this.slot.replaceChildren(video);
      this.video = video;
      if (window.Hls && window.Hls.isSupported()) {
        const player = new window.Hls({ liveSyncDurationCount: 2, maxBufferLength: 10, backBufferLength: 10 });
        player.on(window.Hls.Events.ERROR, (_event, data) => {
          if (data.fatal) this.fail(`${data.type}: ${data.details}`);
        });
        player.loadSource(url);
        player.attachMedia(video);
        this.player = player;
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = url; // Safari plays HLS itself
        this.player = "native";
      } else {
        this.stop();
        this.say("this browser cannot play HLS");
        return;
      }
      video.play().catch(() => {}); // muted autoplay is allowed; a refusal only leaves the controls
    }

    fail(why) {
      this.stop();
      this.retryAt = Date.now() + RETRY_PREVIEW_MS;
      this.say(`preview failed (${why}); trying again shortly`);
      this.slot.dataset.error = why;
    }

    stop() {
      if (this.player && this.player !== "native") this.player.destroy();
      this.player = null;
      if (this.video) {
        this.video.removeAttribute("src");
        this.video.load();
        this.video.remove();
        this.video = null;
      }
    }

    say(text) {
      if (this.note.textContent !== text) this.note.textContent = text;
    }
  }

  // -- rows ----------------------------------------------------------------------------

  class Row {
    constructor(path) {
      this.tr = el("tr");
      this.tr.dataset.path = path;
      this.cells = Array.from({ length: 5 }, () => el("td"));
      const previewCell = el("td");
      this.tr.append(...this.cells, previewCell);
      this.preview = new Preview(previewCell, path);
      this.tr.row = this;
      if (observer) observer.observe(this.tr);
    }

    update(stream) {
      const contents = [streamCell, inputCell, foundCell, repairedCell, upstreamCell].map((draw) => draw(stream));
      contents.forEach((nodes, i) => this.cells[i].replaceChildren(...nodes));
      this.preview.update(stream.hls);
    }

    remove() {
      if (observer) observer.unobserve(this.tr);
      this.preview.stop();
      this.tr.remove();
    }
  }

  function onVisibility(entries) {
    for (const entry of entries) {
      const row = entry.target.row;
      if (!row) continue;
      row.preview.visible = entry.isIntersecting;
      row.preview.update(row.preview.hls);
    }
  }

  function render(streams) {
    const seen = new Set(streams.map((stream) => stream.path));
    for (const [path, row] of rows) {
      if (!seen.has(path)) {
        row.remove();
        rows.delete(path);
      }
    }
    streams.forEach((stream, index) => {
      let row = rows.get(stream.path);
      if (!row) {
        row = new Row(stream.path);
        rows.set(stream.path, row);
      }
      // The API's order (by path); a row is moved only when out of place, so a playing preview is left alone.
      const here = tbody.children[index];
      if (here !== row.tr) tbody.insertBefore(row.tr, here || null);
      row.update(stream);
    });
    empty.hidden = streams.length > 0;
    const time = new Date().toLocaleTimeString();
    summary.textContent = `${plural(streams.length, "live stream")} · updated ${time}`;
  }

  async function refresh() {
    try {
      const response = await fetch("api/streams", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      connection.hidden = true;
    } catch (error) {
      connection.textContent = `Cannot read /api/streams (${error.message}); retrying every second. The table shows the last answer.`;
      connection.hidden = false;
    } finally {
      setTimeout(refresh, POLL_MS);
    }
  }

  refresh();
})();
