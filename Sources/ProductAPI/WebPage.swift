import HTTPTypes
import Hummingbird
import NIOCore

/// The browser page at `/`: choose a file, upload it straight to the bucket through the presigned PUT
/// (CORS) — or, for a large file, as a resumable upload: parts three at a time, a failed part retried, and
/// after a reload the same file chosen again sends only the parts not stored yet (the session id and the
/// file's name, size and lastModified are kept in localStorage) — watch its state, play it from the signed HLS master playlist (Safari and Chromium play HLS with
/// fMP4 segments natively), or from the MP4 rendition where `canPlayType` says no. One file, no build step,
/// nothing from a CDN. The `<video>` element is `crossorigin="anonymous"`: Chromium's native HLS player
/// only loads segments from another origin (the store's) in CORS mode, so the store must answer CORS for
/// the page's origin (the embedded store does; configure bucket CORS on MinIO or S3).
enum WebPage {
    static func response() -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-cache",
                .contentSecurityPolicy:
                    "default-src 'self'; media-src 'self' blob: http: https:; img-src 'self' http: https: data:; connect-src 'self' http: https:; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>CineScale</title>
        <style>
          body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 960px; padding: 1.5rem; color: #1d2330; }
          h1 { font-size: 1.4rem; margin: 0 0 1rem; } h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
          .box { border: 1px solid #d6dae3; border-radius: 8px; padding: 1rem; margin-bottom: 1rem; }
          label.pick { display: inline-block; padding: .5rem 1rem; background: #2457d6; color: #fff; border-radius: 6px; cursor: pointer; }
          input[type=file] { display: none; }
          progress { width: 100%; height: 10px; }
          .row { display: flex; gap: .75rem; align-items: center; margin: .35rem 0; }
          .row span.name { width: 6.5rem; color: #596275; }
          #resume { background: #fff6dc; border-radius: 6px; padding: .4rem .6rem; }
          #state { font-weight: 600; } .failed { color: #b3261e; }
          video { width: 100%; max-height: 540px; background: #000; border-radius: 6px; }
          ul { padding-left: 1.1rem; } li { margin: .2rem 0; } code { font-size: 12px; }
          a { color: #2457d6; cursor: pointer; }
          #posters img { height: 72px; margin-right: .4rem; border-radius: 4px; }
          #scrub { position: relative; height: 14px; margin: .4rem 0; background: #d6dae3; border-radius: 7px; cursor: pointer; }
          #scrub .done { height: 100%; width: 0; background: #2457d6; border-radius: 7px; }
          #preview { position: absolute; bottom: 20px; border: 2px solid #fff; border-radius: 4px;
                     box-shadow: 0 2px 8px rgba(0,0,0,.4); background-repeat: no-repeat; pointer-events: none; }
        </style>
        </head>
        <body>
        <h1>CineScale</h1>
        <div class="box" id="keybox">
          <div class="row"><span class="name">API key</span>
            <input id="key" type="password" autocomplete="off" placeholder="cs_…" size="60">
            <button id="usekey">Use</button><span id="keystate"></span></div>
        </div>
        <div class="box">
          <label class="pick">Choose a video…<input type="file" id="file" accept="video/*"></label>
          <div class="row" id="resume" hidden><span id="resumetext"></span> <a id="forget">forget it</a></div>
          <div class="row"><span class="name">upload</span><progress id="upload" max="1" value="0"></progress></div>
          <div class="row"><span class="name"></span><small id="uploadinfo"></small></div>
          <div class="row"><span class="name">processing</span><progress id="process" max="100" value="0"></progress></div>
          <div class="row"><span class="name">state</span><span id="state">–</span></div>
        </div>
        <div class="box" id="viewer" hidden>
          <video id="player" controls muted playsinline preload="auto" crossorigin="anonymous"></video>
          <div id="scrub" hidden title="seek (hover for a preview)"><div class="done"></div><div id="preview" hidden></div></div>
          <div class="row"><span class="name">playing</span><code id="source"></code></div>
          <div id="posters"></div>
          <ul id="renditions"></ul>
        </div>
        <h2>Videos</h2>
        <ul id="videos"></ul>
        <script>
        "use strict";
        const $ = (id) => document.getElementById(id);
        let following = null;

        // The API key: from the link's fragment (#key=…, never sent to a server) or typed in, kept in this
        // browser's localStorage and sent as a bearer token on every API call.
        (function takeKeyFromFragment() {
          const match = location.hash.match(/[#&]key=([^&]+)/);
          if (match) {
            localStorage.setItem("cinescale.apiKey", decodeURIComponent(match[1]));
            history.replaceState(null, "", location.pathname + location.search);
          }
        })();
        const apiKey = () => localStorage.getItem("cinescale.apiKey") || "";
        function showKey() {
          $("keystate").textContent = apiKey() ? "saved in this browser" : "needed to upload and list";
          document.body.dataset.key = apiKey() ? "set" : "missing";
        }
        $("usekey").addEventListener("click", () => {
          localStorage.setItem("cinescale.apiKey", $("key").value.trim());
          $("key").value = "";
          showKey();
          refreshList();
        });
        showKey();

        async function api(method, path, body) {
          const headers = { Authorization: `Bearer ${apiKey()}` };
          if (body) headers["Content-Type"] = "application/json";
          const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
          const data = response.status === 204 ? null : await response.json();
          if (!response.ok) throw new Error(data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${response.status}`);
          return data;
        }

        function put(url, file, headers) {
          return new Promise((resolve, reject) => {
            const request = new XMLHttpRequest();
            request.open("PUT", url);
            for (const [name, value] of Object.entries(headers || {})) {
              if (name.toLowerCase() !== "content-length") request.setRequestHeader(name, value);  // the browser sets it
            }
            request.upload.onprogress = (e) => { if (e.lengthComputable) $("upload").value = e.loaded / e.total; };
            request.onload = () => request.status === 200 ? resolve() : reject(new Error(`the store answered ${request.status}: ${request.responseText.slice(0, 300)}`));
            request.onerror = () => reject(new Error("the upload failed (network or CORS)"));
            request.send(file);
          });
        }

        function showState(text, failed) {
          $("state").textContent = text;
          $("state").className = failed ? "failed" : "";
          document.body.dataset.state = text.split(" ")[0];
        }

        $("file").addEventListener("change", async () => {
          const file = $("file").files[0];
          if (!file) return;
          $("upload").value = 0; $("process").value = 0; $("viewer").hidden = true;
          try {
            const resumed = await resumableSession(file);
            if (resumed) { await finishResumable(file, resumed); return; }
            showState("requesting an upload URL");
            const ticket = await api("POST", "/uploads", { fileName: file.name, contentType: file.type || undefined, size: file.size });
            document.body.dataset.videoId = ticket.videoId;
            if (ticket.sessionId) {
              // A large file: a resumable session (the API decides by size).
              saveUpload({ sessionId: ticket.sessionId, videoId: ticket.videoId, name: file.name, size: file.size,
                           lastModified: file.lastModified, percent: 0 });
              await finishResumable(file, { sessionId: ticket.sessionId, videoId: ticket.videoId, partSize: ticket.partSize,
                                            missing: range(1, ticket.partCount), parts: ticket.parts,
                                            storedBytes: 0, partCount: ticket.partCount });
              return;
            }
            showState("uploading");
            await put(ticket.uploadUrl, file, ticket.headers);
            $("upload").value = 1;
            follow(ticket.videoId);
          } catch (error) {
            showState(`failed: ${error.message}`, true);
            showResumeNote();
          }
        });

        // Resumable uploads. The session and the file's identity (name, size, lastModified) stay in
        // localStorage until the upload completes: a page cannot reopen a file by itself, so after a reload the
        // user chooses the same file again and only the parts the store does not have yet are sent.
        const RESUME = "cinescale.resumableUpload";
        const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
        const savedUpload = () => { try { return JSON.parse(localStorage.getItem(RESUME) || "null"); } catch (e) { return null; } };
        const saveUpload = (saved) => localStorage.setItem(RESUME, JSON.stringify(saved));
        const megabytes = (n) => `${(n / 1e6).toFixed(1)} MB`;
        const count = (name, by = 1) => { document.body.dataset[name] = String(Number(document.body.dataset[name] || 0) + by); };
        function showResumeNote() {
          const saved = savedUpload();
          $("resume").hidden = !saved;
          document.body.dataset.resumable = saved ? saved.sessionId : "";
          if (saved) {
            $("resumetext").textContent = `The upload of ${saved.name} (${megabytes(saved.size)}) stopped at ${saved.percent || 0} %. `
              + "Choose the same file again to resume it: only the parts not stored yet are sent.";
          }
        }
        $("forget").addEventListener("click", async () => {
          const saved = savedUpload();
          localStorage.removeItem(RESUME);
          showResumeNote();
          if (saved) { try { await api("DELETE", `/uploads/${saved.sessionId}`); } catch (e) { /* expired or gone already */ } }
        });
        showResumeNote();

        // The saved session when `file` is the file it was uploading and the session is still open; else null.
        async function resumableSession(file) {
          const saved = savedUpload();
          if (!saved || saved.name !== file.name || saved.size !== file.size || saved.lastModified !== file.lastModified) return null;
          showState("resuming");
          let view;
          try { view = await api("GET", `/uploads/${saved.sessionId}`); } catch (error) {
            localStorage.removeItem(RESUME);  // expired or aborted: start again
            showResumeNote();
            return null;
          }
          document.body.dataset.videoId = view.videoId;
          document.body.dataset.partsAlreadyStored = String(view.partCount - view.missingParts.length);
          return { sessionId: saved.sessionId, videoId: view.videoId, partSize: view.partSize, partCount: view.partCount,
                   missing: view.state === "completed" ? [] : view.missingParts, parts: [], storedBytes: view.storedBytes };
        }

        async function finishResumable(file, session) {
          // While it runs, the note about an interrupted upload is this upload: hide it (a reload shows it again).
          $("resume").hidden = true;
          document.body.dataset.resumable = session.sessionId;
          showState(session.storedBytes ? "uploading the missing parts" : "uploading");
          $("uploadinfo").textContent = `resumable: ${session.partCount} parts of ${megabytes(session.partSize)}, `
            + `${session.partCount - session.missing.length} already stored`;
          await sendParts(file, session);
          showState("completing the upload");
          await api("POST", `/uploads/${session.sessionId}/complete`);
          localStorage.removeItem(RESUME);
          showResumeNote();
          $("upload").value = 1;
          follow(session.videoId);
        }

        // Three parts in flight; a failed part is retried (5 tries, backing off), with a fresh URL after a 403.
        async function sendParts(file, session) {
          const urls = new Map((session.parts || []).map((p) => [p.partNumber, p]));
          const queue = [...session.missing];
          const loading = new Map();
          let stored = session.storedBytes;
          const show = () => {
            let inFlight = 0;
            for (const loaded of loading.values()) inFlight += loaded;
            $("upload").value = (stored + inFlight) / file.size;
          };
          show();
          async function urlFor(number) {
            if (!urls.has(number)) {
              const wanted = [number, ...queue.filter((n) => !urls.has(n)).slice(0, 99)];
              const batch = await api("POST", `/uploads/${session.sessionId}/parts`, { partNumbers: wanted });
              for (const p of batch.parts) urls.set(p.partNumber, p);
            }
            return urls.get(number);
          }
          async function worker() {
            while (queue.length) {
              const number = queue.shift();
              for (let attempt = 1; ; attempt++) {
                try {
                  const part = await urlFor(number);
                  const start = (number - 1) * session.partSize;
                  await putPart(part.url, file.slice(start, start + part.size), (loaded) => { loading.set(number, loaded); show(); });
                  loading.delete(number);
                  stored += part.size;
                  count("partsSent");
                  const saved = savedUpload();
                  if (saved) { saved.percent = Math.floor(100 * stored / file.size); saveUpload(saved); }
                  show();
                  break;
                } catch (error) {
                  loading.delete(number);
                  show();
                  if (attempt >= 5) throw error;
                  count("partRetries");
                  if (error.status === 403) urls.delete(number);  // expired: mint it again
                  await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
                }
              }
            }
          }
          await Promise.all([worker(), worker(), worker()]);
        }

        function putPart(url, blob, progress) {
          return new Promise((resolve, reject) => {
            const request = new XMLHttpRequest();
            request.open("PUT", url);
            request.upload.onprogress = (e) => progress(e.loaded);
            request.onload = () => {
              if (request.status === 200) return resolve();
              const error = new Error(`the store answered ${request.status}: ${request.responseText.slice(0, 300)}`);
              error.status = request.status;
              reject(error);
            };
            request.onerror = () => reject(new Error("a part failed (network or CORS)"));
            request.send(blob);
          });
        }

        async function follow(id) {
          following = id;
          while (following === id) {
            let video;
            try { video = await api("GET", `/videos/${id}`); } catch (error) { showState(`failed: ${error.message}`, true); return; }
            if (video.state === "ready") { $("process").value = 100; showState("ready"); play(video); refreshList(); return; }
            // A chunked video plays as soon as its first chunk is up: the whole playlist from 0, the player
            // waiting where the encoder has not got to yet.
            if (video.playable && video.hls && $("player").dataset.early !== id
                && $("player").canPlayType("application/vnd.apple.mpegurl") !== "") {
              $("player").dataset.early = id;
              document.body.dataset.playableAt = video.state;
              play(video);
              $("player").play().catch(() => {});
            }
            if (video.state === "failed") {
              showState(`failed (${video.error.stage}): ${video.error.code}: ${video.error.message}`, true); refreshList(); return;
            }
            $("process").value = video.state === "transcoding" ? 10 + 0.9 * (video.percent || 0) : 5;
            showState(video.state === "transcoding" ? `transcoding ${video.percent || 0} %` : video.state);
            await new Promise((r) => setTimeout(r, 1000));
          }
        }

        function play(video) {
          const player = $("player");
          const renditions = video.renditions || [];
          const best = renditions[renditions.length - 1];
          const hls = video.hls && player.canPlayType("application/vnd.apple.mpegurl") !== "";
          // Already playing this video's playlist since it became playable: keep playing, add the rest.
          const keep = hls && player.dataset.early === video.videoId && player.dataset.source === "hls";
          if (!keep) {
            player.dataset.source = hls ? "hls" : "mp4";
            delete document.body.dataset.canplay;
            player.src = hls ? video.hls : best.url;
            $("source").textContent = hls ? `HLS ${video.hls}` : `MP4 ${best.name}`;
          }
          // Caption tracks as <track kind="subtitles"> (the signed WebVTT URLs; the element is crossorigin).
          for (const old of player.querySelectorAll("track")) old.remove();
          for (const c of video.captions || []) {
            const track = document.createElement("track");
            track.kind = "subtitles"; track.label = c.label; track.src = c.url;
            if (c.language) track.srclang = c.language;
            player.append(track);
          }
          document.body.dataset.captionTracks = String((video.captions || []).length);
          $("renditions").innerHTML = "";
          for (const r of renditions) {
            const li = document.createElement("li");
            const a = document.createElement("a");
            a.textContent = `${r.name} ${r.width}×${r.height}, ${Math.round(r.bitRate / 1000)} kbit/s`;
            a.onclick = () => { player.dataset.source = "mp4"; player.src = r.url; $("source").textContent = `MP4 ${r.name}`; };
            li.append(a, document.createTextNode(` — ${(r.size / 1e6).toFixed(1)} MB`));
            $("renditions").append(li);
          }
          // The default audio track alone (M4A), and which audio tracks the master offers.
          if (video.audioDownload) {
            const li = document.createElement("li");
            const a = document.createElement("a");
            a.textContent = "audio only (M4A)"; a.href = video.audioDownload.url; a.download = "";
            li.append(a, document.createTextNode(` — tracks: ${(video.audio || []).map((t) => t.label).join(", ")}`));
            $("renditions").append(li);
          }
          document.body.dataset.audioTracks = String((video.audio || []).length);
          $("posters").innerHTML = "";
          for (const p of (video.thumbnails && video.thumbnails.posters) || []) {
            const img = document.createElement("img");
            img.src = p.url; img.alt = `poster at ${p.time.toFixed(1)} s`;
            img.onclick = () => { player.currentTime = p.time; };
            $("posters").append(img);
          }
          $("viewer").hidden = false;
          loadStoryboard(video);
        }

        // Seek-bar previews from the video's WebVTT storyboard: each cue names a tile of the sprite with
        // #xywh=x,y,w,h; hovering over the bar shows the tile of that time.
        let storyboard = [];
        async function loadStoryboard(video) {
          const path = video.thumbnails && video.thumbnails.storyboard;
          if (!path || $("scrub").dataset.video === video.videoId) return;
          try {
            const response = await fetch(path);
            if (!response.ok) return;
            storyboard = parseStoryboard(await response.text());
            $("scrub").dataset.video = video.videoId;
            $("scrub").hidden = storyboard.length === 0;
            document.body.dataset.storyboardCues = String(storyboard.length);
          } catch (error) { /* previews are a convenience */ }
        }

        function parseStoryboard(text) {
          const seconds = (t) => t.split(":").reduce((total, part) => total * 60 + parseFloat(part), 0);
          const cues = [];
          const blocks = text.replace(/\r/g, "").split("\n\n");
          for (const block of blocks) {
            const lines = block.split("\n");
            const timing = lines.findIndex((line) => line.includes("-->"));
            if (timing < 0 || !lines[timing + 1]) continue;
            const [start, end] = lines[timing].split("-->").map((t) => seconds(t.trim().split(" ")[0]));
            const [url, fragment] = lines[timing + 1].trim().split("#xywh=");
            if (!fragment) continue;
            const [x, y, w, h] = fragment.split(",").map(Number);
            cues.push({ start, end, url, x, y, w, h });
          }
          return cues;
        }

        function scrubTime(event) {
          const bar = $("scrub").getBoundingClientRect();
          const duration = $("player").duration || (storyboard.length ? storyboard[storyboard.length - 1].end : 0);
          return Math.max(0, Math.min(1, (event.clientX - bar.left) / bar.width)) * duration;
        }

        $("scrub").addEventListener("mousemove", (event) => {
          const time = scrubTime(event);
          const cue = storyboard.find((c) => time >= c.start && time < c.end) || storyboard[storyboard.length - 1];
          if (!cue) return;
          const preview = $("preview");
          preview.style.width = `${cue.w}px`; preview.style.height = `${cue.h}px`;
          preview.style.backgroundImage = `url("${cue.url}")`;
          preview.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
          const bar = $("scrub").getBoundingClientRect();
          preview.style.left = `${Math.max(0, Math.min(bar.width - cue.w, event.clientX - bar.left - cue.w / 2))}px`;
          preview.hidden = false;
          document.body.dataset.preview = `${cue.start} ${cue.x},${cue.y},${cue.w},${cue.h}`;
        });
        $("scrub").addEventListener("mouseleave", () => { $("preview").hidden = true; });
        $("scrub").addEventListener("click", (event) => { $("player").currentTime = scrubTime(event); });
        $("player").addEventListener("timeupdate", () => {
          const p = $("player");
          $("scrub").firstElementChild.style.width = p.duration ? `${100 * p.currentTime / p.duration}%` : "0";
        });

        $("player").addEventListener("canplay", () => { document.body.dataset.canplay = $("player").dataset.source; });
        $("player").addEventListener("ended", () => { document.body.dataset.ended = String($("player").currentTime); });
        $("player").addEventListener("seeked", () => { document.body.dataset.seeked = String($("player").currentTime); });
        $("player").addEventListener("error", () => {
          const e = $("player").error;
          document.body.dataset.mediaError = e ? `${e.code} ${e.message}` : "unknown";
        });

        async function refreshList() {
          try {
            const page = await api("GET", "/videos?limit=20");
            $("videos").innerHTML = "";
            for (const v of page.videos) {
              const li = document.createElement("li");
              const a = document.createElement("a");
              a.textContent = v.fileName || v.videoId;
              a.onclick = () => { $("upload").value = 1; follow(v.videoId); };
              li.append(a, document.createTextNode(` — ${v.state}${v.state === "transcoding" ? ` ${v.percent} %` : ""}`));
              $("videos").append(li);
            }
          } catch (error) { /* the list is a convenience */ }
        }
        refreshList();
        </script>
        </body>
        </html>
        """#
}
