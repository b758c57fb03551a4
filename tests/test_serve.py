"""`ftwizard serve` for real: the command started as a user starts it, talked to over HTTP and
websockets, and driven in headless Chromium (Debian's chromium + chromedriver, through selenium).

Nothing is mocked: each browser session is the real wizard process textual-serve starts, and the run
test trains the tiny model in a detached process launched by keys typed into the browser.
Browser tests are skipped, with the reason, where chromium or chromedriver is missing.
"""

from __future__ import annotations

import ipaddress
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

pytest.importorskip("textual_serve", reason="textual-serve is not installed (pip install 'ftwizard[serve]')")
aiohttp = pytest.importorskip("aiohttp")

FTWIZARD = Path(sys.executable).with_name("ftwizard")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
TIMEOUT = 90  # seconds: a generous bound for a wizard process to start on a busy 2-core machine


class Served:
    """A running `ftwizard serve`: its process, the printed URL, its output so far."""

    def __init__(self, proc: subprocess.Popen, url: str, out: list[str], err: list[str]):
        self.proc, self.url, self.out, self.err = proc, url, out, err
        rest = url.split("://", 1)[1]
        self.host_port, self.token = rest.split("/")[0], rest.split("/")[1]
        self.port = int(self.host_port.rsplit(":", 1)[1])

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of GET http://127.0.0.1:PORT{path}."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def sessions(self) -> list[psutil.Process]:
        """The wizard processes serving browser tabs right now."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [k for k in kids if _is_session(k)]


def _is_session(p: psutil.Process) -> bool:
    try:
        return "ftwizard.tui.serve_session" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_for(predicate, timeout: float = TIMEOUT, poll: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def serve(tmp_path):
    """A factory: serve(*args) starts `ftwizard serve --port 0 *args` in tmp_path and returns a Served
    once it printed its address. Stopped with SIGTERM (as Ctrl+C would) at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(*args: str, cwd: Path = tmp_path) -> Served:
        env = dict(os.environ, FTWIZARD_RUNS_DIR=str(tmp_path / "runs"), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([str(FTWIZARD), "serve", "--port", "0", *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        out: list[str] = []
        err: list[str] = []
        lines: queue.Queue[str] = queue.Queue()

        def pump(stream, into):
            for line in stream:
                into.append(line)
                lines.put(line)

        threading.Thread(target=pump, args=(proc.stdout, out), daemon=True).start()
        threading.Thread(target=pump, args=(proc.stderr, err), daemon=True).start()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            if " on http://" in line:
                return Served(proc, line.split(" on ", 1)[1].strip(), out, err)
        raise AssertionError(f"serve printed no address: {''.join(out + err)[-2000:]}")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------------- the token, the host


def test_every_address_without_the_token_is_refused_with_403(serve):
    s = serve()
    assert s.url.startswith("http://127.0.0.1:") and len(s.token) >= 32
    assert sum(s.token in line for line in s.out + s.err) == 1  # printed once
    wrong = s.token[:-1] + ("A" if s.token[-1] != "A" else "B")
    for path in ("/", "/ws", "/static/js/textual.js", "/static/css/xterm.css", f"/{wrong}/",
                 f"/{wrong}/ws", f"/{wrong}/static/js/textual.js", f"/x/{s.token}/", "/favicon.ico"):
        status, body = s.get(path)
        assert status == 403, path
        assert s.token not in body
    status, page = s.get(f"/{s.token}/")
    assert status == 200 and f"/{s.token}/ws" in page
    assert s.get(f"/{s.token}/static/js/textual.js")[0] == 200


async def test_websocket_without_the_token_is_refused_with_403(serve):
    s = serve()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"ws://127.0.0.1:{s.port}/ws?width=80&height=24")
    assert refused.value.status == 403
    assert s.sessions() == []  # no wizard was started for it


def test_listens_on_loopback_only_by_default(serve):
    s = serve()
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.pid == s.proc.pid and c.status == psutil.CONN_LISTEN]
    assert listening, "serve has no listening socket"
    for conn in listening:
        assert conn.laddr.port == s.port
        assert ipaddress.ip_address(conn.laddr.ip).is_loopback, conn.laddr
    # And from this machine's other addresses, nothing answers on that port.
    import socket

    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback]
    for ip in others:
        with socket.socket() as sock:
            sock.settimeout(5)
            assert sock.connect_ex((ip, s.port)) != 0, f"reachable on {ip}"


def test_any_other_host_is_served_only_with_a_warning_and_still_needs_the_token(serve):
    s = serve("--host", "0.0.0.0")
    # Printed before the address, but on stderr: its reader thread may be a moment behind stdout's.
    _wait_for(lambda: any("warning" in line and "0.0.0.0" in line for line in s.err), timeout=30,
              what=f"the warning on stderr (got {s.err})")
    assert s.get("/")[0] == 403
    assert s.get(f"/{s.token}/")[0] == 200


@pytest.mark.parametrize("args, field", [
    (["--max-sessions", "0"], "--max-sessions"),
    (["--idle-minutes", "0"], "--idle-minutes"),
    (["--attach", "no-such-run"], "RUN"),
])
def test_bad_arguments_are_one_line_errors_before_anything_listens(tmp_path, args, field):
    out = subprocess.run([str(FTWIZARD), "serve", "--port", "0", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, FTWIZARD_RUNS_DIR=str(tmp_path / "runs")))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and field in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and " on http://" not in out.stdout


# ---------------------------------------------------------------------------------- sessions


async def _open_session(s: Served, http):
    """A websocket session as the browser opens it; returns once its wizard has drawn something."""
    ws = await http.ws_connect(f"ws://127.0.0.1:{s.port}/{s.token}/ws?width=80&height=24")
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return ws, msg.data


async def test_each_tab_gets_its_own_wizard_and_one_more_than_the_bound_is_refused(serve):
    s = serve("--max-sessions", "2")
    async with aiohttp.ClientSession() as http:
        first, _ = await _open_session(s, http)
        second, _ = await _open_session(s, http)
        tabs = s.sessions()
        assert len(tabs) == 2 and tabs[0].pid != tabs[1].pid
        status, page = s.get(f"/{s.token}/")
        assert status == 503 and "2 browser sessions are open" in page and "--max-sessions 2" in page
        third = await http.ws_connect(f"ws://127.0.0.1:{s.port}/{s.token}/ws")
        refusal = await third.receive(timeout=TIMEOUT)
        assert b"--max-sessions 2" in refusal.data
        assert (await third.receive(timeout=TIMEOUT)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert len(s.sessions()) == 2
        await first.close()  # closing a tab ends its wizard and frees its place
        _wait_for(lambda: len(s.sessions()) == 1, what="the closed tab's wizard to exit")
        assert s.get(f"/{s.token}/")[0] == 200
        await second.close()
    _wait_for(lambda: s.sessions() == [], what="every wizard to exit")


async def test_an_idle_tab_is_ended(serve):
    s = serve("--idle-minutes", "0.05")  # 3 seconds without a key, click or resize
    async with aiohttp.ClientSession() as http:
        ws, _ = await _open_session(s, http)
        assert len(s.sessions()) == 1
        while True:  # the server closes it; the wizard's output until then is read and dropped
            msg = await ws.receive(timeout=TIMEOUT)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
    _wait_for(lambda: s.sessions() == [], what="the idle tab's wizard to exit")
    assert s.proc.poll() is None  # serve itself goes on
    assert s.get(f"/{s.token}/")[0] == 200


async def test_attach_serves_that_runs_monitor_in_each_tab(serve, tiny_config):
    from ftwizard.core.launch import create_run

    run_dir = create_run(tiny_config(steps=5))  # created, not started: the monitor shows it all the same
    s = serve("--attach", run_dir.name[:15], "--runs-dir", str(run_dir.parent))
    assert run_dir.name in s.url or run_dir.name in "".join(s.out)  # the title names the run
    async with aiohttp.ClientSession() as http:
        ws, first = await _open_session(s, http)
        seen = bytearray(first)
        while run_dir.name.encode() not in seen:  # the monitor's header names the run
            msg = await ws.receive(timeout=TIMEOUT)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            seen += msg.data
        (tab,) = s.sessions()
        assert tab.cmdline()[-2:] == ["--attach", str(run_dir.resolve())]
        await ws.close()


# ---------------------------------------------------------------------------------- in a browser


def _browser_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no headless browser: `apt-get install chromium chromium-driver` (as .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # No WebGL: xterm.js then draws with DOM rows, whose text the test can read (WebGL is a canvas).
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,760",
                "--disable-3d-apis", "--disable-webgl"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(driver))


@pytest.fixture
def browser():
    b = _browser_or_skip()
    yield b
    b.quit()


def _screen_text(browser) -> str:
    return browser.execute_script(
        "const r = document.querySelector('.xterm-rows'); return r ? r.innerText : '';") or ""


def _wait_screen(browser, text: str, timeout: float = TIMEOUT) -> str:
    return _wait_for(lambda: text in (screen := _screen_text(browser)) and screen, timeout,
                     what=f"{text!r} in the browser")


def _type(browser, keys: str) -> None:
    """Keys to the terminal as a user's keyboard sends them: xterm.js's hidden helper textarea is focused
    and the keys go to the focused element (newer chromedrivers refuse `send_keys` on a hidden element:
    "element not interactable")."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from selenium.webdriver.common.keys import Keys

    area = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    browser.execute_script("arguments[0].focus();", area)
    chain = ActionChains(browser)
    if keys.startswith(Keys.CONTROL):  # a chord: ctrl held while the rest is typed
        chain.key_down(Keys.CONTROL).send_keys(keys[1:]).key_up(Keys.CONTROL)
    else:
        chain.send_keys(keys)
    chain.perform()


def test_browser_shows_the_welcome_screen_and_a_key_opens_the_questionnaire(serve, browser, tmp_path):
    s = serve()
    browser.get(s.url)
    screen = _wait_screen(browser, "Guide me (questionnaire)")
    assert "step 1 of" in screen
    if os.environ.get("FTWIZARD_UPDATE_SCREENSHOTS"):  # the README's picture
        browser.save_screenshot(str(SCREENSHOTS / "serve-browser.png"))
    _type(browser, "g")
    screen = _wait_screen(browser, "step 2 of")
    assert "Guide me (questionnaire)" not in screen
    shot = tmp_path / "questionnaire.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert len(s.sessions()) == 1


@pytest.mark.slow
def test_a_run_launched_from_the_browser_trains_on_after_serve_is_killed(serve, browser, tiny_config,
                                                                          tmp_path):
    """Keys typed into the browser: `l`, the config's path, enter (Review), ctrl+n (launch). Then
    `serve` is killed with SIGKILL: its tab's wizard exits, the run finishes all its steps."""
    from selenium.webdriver.common.keys import Keys

    from ftwizard.core.config import save_config
    from ftwizard.core.events import read_events
    from ftwizard.core.selftest import wait_for_end

    steps = 30
    cfg = tiny_config(steps=steps)
    config = tmp_path / "tiny.yaml"
    save_config(cfg, config)
    runs = Path(cfg.runs_dir)
    s = serve("--runs-dir", str(runs))
    browser.get(s.url)
    _wait_screen(browser, "Load a config file")
    _type(browser, "l")
    _wait_screen(browser, "Path to a YAML config")
    _type(browser, str(config) + Keys.ENTER)
    _wait_screen(browser, "Review and launch")
    _type(browser, Keys.CONTROL + "n")
    run_dir = _wait_for(lambda: next((d for d in runs.glob("*") if (d / "events.jsonl").exists()), None),
                        what="the launched run's events")

    def steps_logged() -> int:
        return max((e.get("step", 0) for e in read_events(run_dir) if e.get("type") == "train"), default=0)

    _wait_for(lambda: steps_logged() > 0, what="the first training step")
    tabs = s.sessions()
    assert len(tabs) == 1
    s.proc.kill()  # SIGKILL: no quit message reaches anyone
    s.proc.wait()
    at_kill = steps_logged()
    _wait_for(lambda: not tabs[0].is_running() or tabs[0].status() == psutil.STATUS_ZOMBIE,
              what="the orphaned tab's wizard to exit")
    # `ftwizard status` from a terminal sees the run.
    out = subprocess.run([str(FTWIZARD), "status", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and run_dir.name in out.stdout, out.stdout + out.stderr
    info = wait_for_end(run_dir, timeout=600)
    assert info.state == "completed", info
    assert at_kill < steps  # killed mid-training
    assert steps_logged() > at_kill  # and it trained on
