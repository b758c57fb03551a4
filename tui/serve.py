"""Serve the wizard (with --attach RUN: that run's monitor) in a browser tab. It listens on 127.0.0.1
only; the printed address carries a random token, and anything without it is refused (403). From
another machine: `ssh -L 8000:127.0.0.1:8000 HOST`, then open the printed address there. Each tab is
its own wizard (at most --max-sessions at once; a tab idle for --idle-minutes ends). Runs launched
from a tab are detached: closing the tab or stopping `serve` never stops training."""

# How (the docstring above is `ftwizard serve --help`):
# - textual-serve starts one process per browser websocket (tui/serve_session.py: the same App the
#   terminal gets, under Textual's web driver), so tabs share nothing but the runs directory.
# - Every address lives under `/<token>/` (secrets.token_urlsafe, printed once, never logged: the
#   access log is off); a middleware refuses anything else with 403: page, websocket, static files.
#   Any host but loopback is served only with a printed warning, and the token is still required.
# - The tab bound and the idle end are counted here, per websocket (stdin and resize are activity;
#   the browser's pings are not).
# - Runs are detached processes in a session of their own (core.launch.start): closing the tab,
#   losing the connection, stopping or killing `serve` ends only wizards, never training.

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from ftwizard.core.errors import UserError

DEFAULT_PORT = 8000
QUIT_SECONDS = 10  # a tab's app gets this long to exit after the quit message
REFUSED = "403: this address needs the token that `ftwizard serve` printed when it started.\n"
FULL_PAGE = """<!DOCTYPE html>
<html><head><title>ftwizard: too many sessions</title></head><body>
<h1>ftwizard: {open} browser sessions are open</h1>
<p>That is the most this server allows (<code>ftwizard serve --max-sessions {limit}</code>).
Close another ftwizard tab, or wait for an idle one to end (after {idle} minutes without a key),
then reload this page.</p>
<p>Runs started from the other tabs go on training either way.</p>
</body></html>
"""
FULL_TERMINAL = ("\r\n  ftwizard: {open} browser sessions are open, the most this server allows "
                 "(--max-sessions {limit}).\r\n  Close another ftwizard tab, then reload this one.\r\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; reach it from "
                        "elsewhere with `ssh -L 8000:127.0.0.1:8000 HOST`)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--attach", metavar="RUN",
                   help="serve this run's monitor (run id, unique prefix or directory) instead of the wizard")
    p.add_argument("--runs-dir", help="runs root (default ./runs or $FTWIZARD_RUNS_DIR)")
    p.add_argument("--max-sessions", type=int, default=4,
                   help="browser tabs served at once; one more is refused with a page saying so (default 4)")
    p.add_argument("--idle-minutes", type=float, default=30.0,
                   help="end a tab's wizard after this long without a key, click or resize (default 30)")


def run(args) -> int:
    """Check the arguments (a one-line error before anything listens), then serve until Ctrl+C."""
    if not 0 <= args.port <= 65535:
        raise UserError(f"{args.port} is not a port (0-65535)", field="--port")
    if args.max_sessions < 1:
        raise UserError(f"{args.max_sessions}: at least one session must be allowed", field="--max-sessions")
    if not args.idle_minutes > 0:
        raise UserError(f"{args.idle_minutes}: must be more than 0 minutes", field="--idle-minutes")
    command = [sys.executable, "-m", "ftwizard.tui.serve_session"]
    title = "ftwizard"
    if args.attach:
        from ftwizard.core.runs import resolve_run

        run_dir = resolve_run(args.attach, args.runs_dir)
        command += ["--attach", str(run_dir)]
        title = f"ftwizard: {run_dir.name}"
    elif args.runs_dir:
        command += ["--runs-dir", str(Path(args.runs_dir).expanduser().resolve())]
    import importlib.util

    if importlib.util.find_spec("textual_serve") is None:
        raise UserError("textual-serve is not installed; `pip install 'ftwizard[serve]'` adds it",
                        field="serve")
    server = make_server(
        "exec " + shlex.join(command), host=args.host, port=args.port, title=title,
        token=secrets.token_urlsafe(24), max_sessions=args.max_sessions,
        idle_seconds=args.idle_minutes * 60,
    )
    return asyncio.run(server.serve_until_stopped())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


@dataclass(eq=False)
class Session:
    """One browser tab: its websocket, its app process, and when the person last did something."""

    websocket: object
    last_input: float
    service: object = None
    idle: bool = False


def _server_classes():
    """textual-serve's Server and AppService, subclassed. Built on first use: textual-serve and aiohttp
    are imported only by `ftwizard serve`, so every other command starts without them."""
    import aiohttp_jinja2
    import jinja2
    from aiohttp import WSMsgType, web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server

    class DetachedAppService(AppService):
        """textual-serve's AppService, with the app in a session of its own: Ctrl+C on `serve` reaches
        only `serve`, which then ends each app by the protocol's quit message (no traceback in a tab).
        If `serve` is killed, the app reads end-of-file on its stdin and exits."""

        async def _open_app_process(self, width: int = 80, height: int = 24):
            self._process = process = await asyncio.create_subprocess_shell(
                self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self._build_environment(width=width, height=height),
                start_new_session=True,
            )
            self._stdin = process.stdin
            return process

    class _WizardServer(Server):
        def __init__(self, command: str, *, host: str, port: int, title: str, token: str,
                     max_sessions: int, idle_seconds: float):
            super().__init__(command, host=host, port=port, title=title)
            self.token = token
            self.max_sessions = max_sessions
            self.idle_seconds = idle_seconds
            self.sessions: set[Session] = set()
            self.prefix = f"/{token}"

        # ------------------------------------------------------------------ the token gate

        @web.middleware
        async def require_token(self, request: web.Request, handler):
            first = request.path.split("/", 2)[1]
            if not secrets.compare_digest(first.encode(), self.token.encode()):
                raise web.HTTPForbidden(text=REFUSED)
            response = await handler(request)
            # The token is in the address: never send it on in a Referer, never cache the page.
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            return response

        async def _make_app(self) -> web.Application:
            app = web.Application(middlewares=[self.require_token])
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
            app.add_routes([
                web.get(f"{self.prefix}", self.handle_bare, name="bare"),
                web.get(f"{self.prefix}/", self.handle_index, name="index"),
                web.get(f"{self.prefix}/ws", self.handle_websocket, name="websocket"),
                web.get(f"{self.prefix}/download/{{key}}", self.handle_download, name="download"),
                web.static(f"{self.prefix}/static", self.statics_path, show_index=False, name="static"),
            ])
            return app

        async def handle_bare(self, request: web.Request):
            raise web.HTTPFound(f"{self.prefix}/")

        # ------------------------------------------------------------------ the page

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            if len(self.sessions) >= self.max_sessions:
                return self._full_page()
            # Addresses as the browser reached us (an ssh -L tunnel may use another local port).
            scheme = "wss" if request.secure else "ws"
            context = {
                "font_size": _to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": f"{scheme}://{request.host}{self.prefix}/ws",
                "config": {"static": {"url": f"{self.prefix}/static/"}},
                "application": {"name": self.title},
            }
            return aiohttp_jinja2.render_template("app_index.html", request, context)

        def _full_page(self) -> web.Response:
            text = FULL_PAGE.format(open=len(self.sessions), limit=self.max_sessions,
                                    idle=_minutes(self.idle_seconds))
            return web.Response(status=503, text=text, content_type="text/html")

        # ------------------------------------------------------------------ the sessions

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            websocket = web.WebSocketResponse(heartbeat=15)
            await websocket.prepare(request)
            if len(self.sessions) >= self.max_sessions:
                await websocket.send_bytes(FULL_TERMINAL.format(
                    open=len(self.sessions), limit=self.max_sessions).encode())
                await websocket.close()
                return websocket
            loop = asyncio.get_running_loop()
            session = Session(websocket, last_input=loop.time())
            self.sessions.add(session)
            watchdog = asyncio.create_task(self._end_when_idle(session))
            try:
                session.service = DetachedAppService(
                    self.command, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                    close=websocket.close, download_manager=self.download_manager, debug=self.debug)
                await session.service.start(_to_int(request.query.get("width", "80"), 80),
                                            _to_int(request.query.get("height", "24"), 24))
                await self._relay(websocket, session)
            finally:
                watchdog.cancel()
                await self._end(session)
            return websocket

        async def _relay(self, websocket, session: Session) -> None:
            """textual-serve's message loop, noting when the person last typed, clicked or resized."""
            service = session.service
            async for message in websocket:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    kind, *rest = message.json()
                except (ValueError, TypeError):
                    continue
                if kind == "stdin":
                    session.last_input = asyncio.get_running_loop().time()
                    await service.send_bytes(str(rest[0]).encode("utf-8"))
                elif kind == "resize":
                    session.last_input = asyncio.get_running_loop().time()
                    await service.set_terminal_size(rest[0]["width"], rest[0]["height"])
                elif kind == "ping":
                    await websocket.send_json(["pong", rest[0] if rest else None])
                elif kind == "blur":
                    await service.blur()
                elif kind == "focus":
                    await service.focus()

        async def _end_when_idle(self, session: Session) -> None:
            loop = asyncio.get_running_loop()
            while (left := session.last_input + self.idle_seconds - loop.time()) > 0:
                await asyncio.sleep(min(left, 30.0))
            session.idle = True
            await self._end(session)  # the browser shows "Session ended" and a Restart button

        async def _end(self, session: Session) -> None:
            """Quit the tab's app (the protocol's quit message; it exits at once, runs go on), close its
            websocket. Safe to call twice: the idle watchdog and the websocket's end may both get here."""
            self.sessions.discard(session)
            service = session.service
            if service is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(service.stop()), QUIT_SECONDS)
                except TimeoutError:  # an app that does not quit is killed (its runs are elsewhere)
                    if service._process is not None and service._process.returncode is None:
                        service._process.kill()
            await session.websocket.close()

        async def end_all_sessions(self) -> None:
            await asyncio.gather(*(self._end(s) for s in list(self.sessions)))

        # ------------------------------------------------------------------ serving

        async def serve_until_stopped(self) -> int:
            runner = web.AppRunner(await self._make_app(), access_log=None, handle_signals=False,
                                   shutdown_timeout=5)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, self.port).start()
            except OSError as exc:
                await runner.cleanup()
                raise UserError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                                field="--port" if exc.errno == 98 else "--host") from None
            port = runner.addresses[0][1]
            shown_host = self.host if self.host not in ("0.0.0.0", "::") else _hostname()
            if ":" in shown_host:
                shown_host = f"[{shown_host}]"
            if not is_loopback(self.host):
                print(f"ftwizard serve: warning: listening on {self.host}, reachable from other machines. "
                      "Anyone holding the address below can start training here. The default, "
                      "127.0.0.1 with `ssh -L`, keeps it on this machine.", file=sys.stderr, flush=True)
            print(f"ftwizard serve: {self.title} on http://{shown_host}:{port}{self.prefix}/", flush=True)
            print(f"  The token in that address is the password; it is printed only here. At most "
                  f"{self.max_sessions} tabs at once; idle tabs end after {_minutes(self.idle_seconds)} "
                  "minutes.", flush=True)
            if is_loopback(self.host):
                print(f"  From another machine: ssh -L {port}:127.0.0.1:{port} {_hostname()}, then open "
                      "the address there.", flush=True)
            print("  Ctrl+C stops serving; runs started from a browser keep training.", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            print(f"ftwizard serve: stopping ({len(self.sessions)} tab(s) end; their runs go on)",
                  flush=True)
            await self.end_all_sessions()
            await runner.cleanup()
            return 0

    return _WizardServer


def make_server(command: str, **kwargs):
    """textual-serve's Server with the token gate, the session bound and the idle end (see the module)."""
    return _server_classes()(command, **kwargs)


def _to_int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}"


def _hostname() -> str:
    import socket

    return socket.gethostname() or os.uname().nodename
