"""The web page in headless Chromium (Debian's chromium + chromium-driver, driven by selenium): choose a
generated clip, which the page uploads straight to the bucket through the presigned PUT (CORS), watch it
become ready, play it from the signed HLS master playlist, and seek past the first segment. A screenshot is
kept in .test-output/web-page.png."""
import os
import shutil
import time
import urllib.request

import pytest

from test_product import Dev

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from conftest import ffmpeg, temporary, wait_for

OUTPUT = os.path.join(os.path.dirname(__file__), "..", ".test-output")


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed (scripts/test installs them)")
    options = Options()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1100",
                     "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def dev():
    with temporary("cinescale-web-", Dev) as d:
        yield d


def wait_until(driver, what, script, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        failed = driver.execute_script("return document.body.dataset.state === 'failed' && document.getElementById('state').textContent")
        error = driver.execute_script("return document.body.dataset.mediaError")
        assert not failed and not error, f"{what}: {failed or error}"
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; state: "
                         + driver.execute_script("return document.getElementById('state').textContent"))


def test_upload_watch_and_play_hls_in_chromium(browser, dev, tmp_path):
    clip = str(tmp_path / "browser clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=10",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=10",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    browser.get(dev.api + "/#key=" + dev.key)
    assert browser.title == "CineScale"
    # Chromium says it can play HLS natively, so the page must choose the signed master playlist.
    assert browser.execute_script("return document.createElement('video').canPlayType('application/vnd.apple.mpegurl')")
    browser.find_element(By.ID, "file").send_keys(clip)

    wait_until(browser, "ready", "return document.body.dataset.state === 'ready'")
    source = wait_until(browser, "canplay", "return document.body.dataset.canplay")
    assert source == "hls"
    player = browser.find_element(By.ID, "player")
    assert "/master.m3u8" in player.get_attribute("currentSrc")
    assert browser.execute_script("return document.getElementById('player').duration") == pytest.approx(10, abs=0.3)
    # Seek past the first 4-second segment: the player fetches a later segment over its signed URL.
    browser.execute_script("const p = document.getElementById('player'); p.currentTime = 6.5; p.play();")
    wait_until(browser, "the seek", "return document.body.dataset.seeked")
    wait_until(browser, "playback past the seek",
               "const p = document.getElementById('player'); return p.readyState >= 3 && p.currentTime >= 6.5")
    assert browser.find_element(By.ID, "videos").text.count("browser clip.mp4") == 1

    # The WebVTT storyboard: a cue per sprite tile, #xywh= into the sprite; hovering over the seek bar at 75 %
    # shows the tile of that time, and the sprite it names loads.
    cues = int(wait_until(browser, "the storyboard", "return document.body.dataset.storyboardCues"))
    video_id = browser.execute_script("return document.getElementById('scrub').dataset.video")
    with urllib.request.urlopen(f"{dev.api}/stream/{video_id}/storyboard.vtt", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/vtt")
        vtt = response.read().decode()
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == cues >= 5
    assert f"00:00:00.000 --> " in vtt and f"/stream/{video_id}/storyboard.jpg#xywh=0,0," in vtt
    bar = browser.find_element(By.ID, "scrub")
    ActionChains(browser).move_to_element_with_offset(bar, int(bar.size["width"] * 0.25), 0).perform()
    preview = wait_until(browser, "a preview", "return document.body.dataset.preview")
    start = float(preview.split()[0])
    assert 6.5 <= start <= 7.5 + 1e-6, preview  # the tile whose interval holds 7.5 s
    assert wait_until(browser, "the sprite image", """
        const url = getComputedStyle(document.getElementById('preview')).backgroundImage.slice(5, -2);
        return new Promise((resolve) => { const i = new Image(); i.onload = () => resolve(i.naturalWidth);
                                          i.onerror = () => resolve(0); i.src = url; });""") > 0
    os.makedirs(OUTPUT, exist_ok=True)
    browser.save_screenshot(os.path.join(OUTPUT, "web-page.png"))


def test_a_chunked_video_plays_from_0_to_its_end_while_later_chunks_encode(browser, dev, tmp_path):
    """cinescale dev chunks every video: the page starts the signed HLS playlist as soon as the first chunk is
    up (the video still `transcoding`), and Chromium plays it to its end, waiting where a segment is not
    encoded yet (the API holds its request) — never an error, never a skipped part."""
    clip = str(tmp_path / "chunked clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=60",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=60",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    # /index.html, not /: after the first test the page is at / and a fragment alone would not reload it.
    browser.get(dev.api + "/index.html#key=" + dev.key)
    browser.find_element(By.ID, "file").send_keys(clip)
    state = wait_until(browser, "playable", "return document.body.dataset.playableAt")
    assert state == "transcoding"
    assert wait_until(browser, "canplay", "return document.body.dataset.canplay") == "hls"
    browser.execute_script("const p = document.getElementById('player'); p.playbackRate = 4; p.play();")
    wait_until(browser, "the end of the video", "return document.body.dataset.ended", timeout=240)
    end = browser.execute_script("return document.getElementById('player').currentTime")
    duration = browser.execute_script("return document.getElementById('player').duration")
    assert duration == pytest.approx(60, abs=0.3) and end == pytest.approx(60, abs=0.3)
    played = browser.execute_script(
        "const r = document.getElementById('player').played; return [r.length, r.start(0), r.end(r.length - 1)]")
    assert played[0] == 1 and played[1] == pytest.approx(0, abs=0.1) and played[2] == pytest.approx(60, abs=0.3), played


def test_caption_tracks_are_track_elements_chromium_loads(browser, dev, tmp_path):
    """A source with a subtitle stream: the page puts its WebVTT rendition on the <video> as
    <track kind="subtitles">, and Chromium loads the signed .vtt (cross-origin, as the element is) into cues."""
    from test_captions import CUES, source
    clip = source(tmp_path, 6)
    browser.get(dev.api + "/index.html#key=" + dev.key)
    browser.find_element(By.ID, "file").send_keys(clip)
    wait_until(browser, "ready", "return document.body.dataset.state === 'ready' && document.body.dataset.captionTracks")
    track = browser.execute_script("""
        const t = document.querySelector('#player track');
        return t && [t.kind, t.srclang, t.label, t.src.includes('captions.vtt')];""")
    assert track == ["subtitles", "eng", "eng", True]
    cues = wait_until(browser, "the cues", """
        const t = document.querySelector('#player track');
        t.track.mode = 'showing';
        return t.readyState === 2 && Array.from(t.track.cues).map((c) => [c.startTime, c.endTime, c.text]);""", timeout=30)
    assert [c[2] for c in cues] == [c[2] for c in CUES]
    assert all(abs(a - c) < 0.01 and abs(b - d) < 0.01 for (a, b, _), (c, d, _) in zip(cues, CUES))


# Counts the part PUTs the page sends (by `partNumber=` in the URL) and, while `__holdAfter` is set, holds every
# part past that many: its request is never sent, as over a connection that hung. Installed by the test, not
# by the page.
INSTRUMENT = """
window.__partPuts = [];
const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.open = function (method, url) { this.__url = String(url); return open.apply(this, arguments); };
XMLHttpRequest.prototype.send = function (body) {
  const match = /[?&]partNumber=(\\d+)/.exec(this.__url || "");
  if (match) {
    window.__partPuts.push(Number(match[1]));
    if (window.__holdAfter !== undefined && window.__partPuts.length > window.__holdAfter) return;
  }
  return send.apply(this, arguments);
};
"""


def test_a_large_upload_resumes_after_a_page_reload_sending_only_the_missing_parts(browser, dev, tmp_path):
    """A 100 MB file (over the 64 MiB threshold: 12 parts of 8 MiB) uploads as a resumable session, three parts
    in flight; once half the parts are stored the page is reloaded. It says how to resume; the same file chosen
    again sends only the six missing parts (counted in the page and checked against the store's list), and the
    video becomes ready and plays."""
    from test_resumable_upload import padded_clip
    clip = padded_clip(tmp_path, "large clip.mp4", 100_000_000, seconds=4)
    browser.get(dev.api + "/index.html#key=" + dev.key)
    browser.execute_script(INSTRUMENT + "window.__holdAfter = 6;")
    browser.find_element(By.ID, "file").send_keys(clip)
    wait_until(browser, "the session", "return document.body.dataset.resumable")
    session = browser.execute_script("return JSON.parse(localStorage.getItem('cinescale.resumableUpload'))")
    assert session["size"] == 100_000_000 and session["name"] == "large clip.mp4"

    def half_stored():
        status, view = dev.json("GET", f"/uploads/{session['sessionId']}")
        assert status == 200
        return view if len(view["parts"]) == 6 else None
    view = wait_for("six parts stored", half_stored, timeout=60)
    assert wait_until(browser, "six parts counted", "return document.body.dataset.partsSent === '6'")
    progress = browser.execute_script("return document.getElementById('upload').value")
    assert 0.45 <= progress <= 0.55, progress
    assert browser.execute_script("return window.__partPuts.length") == 9  # three held in flight
    stored = {p["partNumber"] for p in view["parts"]}
    assert len(stored) == 6

    browser.refresh()
    assert wait_until(browser, "the resume note", "return !document.getElementById('resume').hidden && document.body.dataset.resumable")
    note = browser.find_element(By.ID, "resumetext").text
    assert "large clip.mp4" in note and "50 %" in note and "Choose the same file again" in note, note
    browser.execute_script(INSTRUMENT)
    browser.find_element(By.ID, "file").send_keys(clip)
    wait_until(browser, "ready", "return document.body.dataset.state === 'ready'", timeout=240)
    sent = browser.execute_script("return window.__partPuts")
    assert sorted(sent) == view["missingParts"] and not set(sent) & stored, (sent, stored)
    assert browser.execute_script("return [document.body.dataset.partsAlreadyStored, document.body.dataset.partsSent]") == ["6", "6"]
    assert browser.execute_script("return localStorage.getItem('cinescale.resumableUpload')") is None
    assert wait_until(browser, "canplay", "return document.body.dataset.canplay") == "hls"
    status, view = dev.json("GET", f"/uploads/{session['sessionId']}")
    assert status == 200 and view["state"] == "completed"
