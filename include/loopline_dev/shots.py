"""Screenshots of the Loopline page in the real Airflow UI (``make ui-shots``).

``python -m loopline_dev.shots`` does what a person would:

1. starts the embedded stack (``loopline_dev.stack``: SQLite metadata DB, LocalExecutor, a local ``mlflow server``,
   the api-server with this repository's ``plugins/``) in ``--home``;
2. runs ``loopline run PROJECT`` over ``--start``..``--end`` against that stack's store and MLflow server
   (``loopline.runner.run_project``: features, the first champion, scoring, drift reports, retraining on the
   retrain cron and on drift, promotions and rejections); the default, 2013-01-01..2013-03-20, gives flights'
   first champions after their 60-day training window and about three weeks of reports and weekly retrains;
3. signs in as the stack's admin (``POST /auth/token`` with the SimpleAuthManager password file), gives headless
   Chromium the token as the ``_token`` cookie the Airflow UI uses (DevTools protocol: ``Network.setCookie``),
   and takes PNGs of the Loopline page (``/loopline/``), a model DAG's page with its "Loopline" tab when the
   plugin declares one (else the DAG page) and one day's drift report;
4. stops the stack.

The PNGs go to ``--out`` (``plugins/loopline_airflow/ui/screenshots/``, shown in the README). Chromium is Debian's
``chromium`` package (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loopline_dev.browser import INSTALL_HINT, BrowserError, chromium

log = logging.getLogger("loopline.shots")
OUT = Path(__file__).resolve().parents[2] / "plugins" / "loopline_airflow" / "ui" / "screenshots"


# -- a minimal DevTools protocol client ------------------------------------------------------------------------
class DevTools:
    """One headless Chromium and one page, driven over the DevTools protocol (``websockets``' sync client)."""

    def __init__(self, width: int, height: int) -> None:
        binary = chromium()
        if binary is None:
            raise BrowserError(f"no Chromium binary on PATH: {INSTALL_HINT}")
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="loopline-shots-chromium-")
        self._proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--hide-scrollbars", "--mute-audio", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.close()
                raise BrowserError("chromium did not open its DevTools port within 60 s")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            pages = [t for t in json.loads(response.read()) if t.get("type") == "page"]
        from websockets.sync.client import connect

        self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30)
        self._next = 0
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result") or {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", {"name": name, "value": value, "url": url, "path": "/", "httpOnly": True})

    def open(self, url: str, *, settle: float = 2.0, wait_for: str | None = None, timeout: float = 90) -> None:
        """Navigate, wait for the load event, then for ``wait_for`` (text in the page) and ``settle`` seconds."""
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.evaluate("document.readyState")
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if state == "complete" and (wait_for is None or wait_for in text):
                break
            time.sleep(0.5)
        else:
            raise BrowserError(f"{url} did not show {wait_for!r} within {timeout:.0f} s")
        time.sleep(settle)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return (result.get("result") or {}).get("value")

    def click_link(self, text: str, href_part: str) -> bool:
        """Click the first link whose text is ``text`` and whose href contains ``href_part``; False when none."""
        script = ("(() => { const el = [...document.querySelectorAll('a')].find(e => e.innerText.trim() === "
                  f"{json.dumps(text)} && (e.getAttribute('href') || '').includes({json.dumps(href_part)})); "
                  "if (!el) return false; el.click(); return true; })()")
        return bool(self.evaluate(script))

    def screenshot(self, path: Path, *, full_page: bool = False, max_height: int = 6000) -> Path:
        """A PNG of the viewport, or with ``full_page`` of the page's whole height up to ``max_height``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            height = int(self.evaluate(f"Math.min(document.documentElement.scrollHeight, {max_height})")
                         or self.height)
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": self.width, "height": max(height, 200), "scale": 1})
        data = self.call("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        log.info("wrote %s", path)
        return path

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)


@contextmanager
def devtools(width: int = 1400, height: int = 1000) -> Iterator[DevTools]:
    browser = DevTools(width, height)
    try:
        yield browser
    finally:
        browser.close()


# -- the steps -------------------------------------------------------------------------------------------------
def sign_in(api_url: str, password: str) -> str:
    """A JWT for the stack's admin from SimpleAuthManager's ``POST /auth/token``."""
    body = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(f"{api_url}/auth/token", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["access_token"])


def newest_report_day(store: Any, project: Any, model: str) -> dt.date | None:
    from loopline.project.names import model_names
    from loopline.reports import report_days

    days = report_days(store, str(project.features.version), dataset=model_names(project, model).drift_dataset)
    return days[-1] if days else None


def take(api_url: str, token: str, out: Path, project: Any, model: str, report_day: dt.date | None) -> list[Path]:
    from loopline.project.names import model_names

    names = model_names(project, model)
    shots: list[Path] = []
    with devtools() as browser:
        browser.set_cookie(api_url, "_token", token)
        # The page on its own, at full length, then as the UI's navigation shows it (inside the Airflow UI).
        browser.open(f"{api_url}/loopline/", wait_for="Over time")
        shots.append(browser.screenshot(out / "loopline-page.png", full_page=True))
        browser.open(f"{api_url}/dags", wait_for="Dags", settle=3)
        if browser.click_link("Loopline", "/plugin/"):
            time.sleep(5)  # the UI loads the page into its frame
            shots.append(browser.screenshot(out / "loopline-in-airflow.png"))
        # A model DAG's page, on its Loopline tab when the plugin declares one for DAGs.
        dag_id = names.dag("drift")
        browser.open(f"{api_url}/dags/{urllib.parse.quote(dag_id)}", wait_for=dag_id, settle=4)
        tab = browser.click_link("Loopline", f"/dags/{dag_id}/")
        if tab:
            time.sleep(5)
        shots.append(browser.screenshot(out / ("dag-loopline-tab.png" if tab else "dag-page.png")))
        if report_day is not None:
            browser.open(f"{api_url}/loopline/reports/{project.project}/{model}/{report_day}.html")
            shots.append(browser.screenshot(out / "drift-report.png", full_page=True, max_height=1400))
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loopline_dev.shots", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".loopline/shots"), help="stack state (wiped first)")
    parser.add_argument("--project", default="flights")
    parser.add_argument("--model", default=None, help="the model whose DAG and report are shot (default: first)")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2013, 3, 20))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "httpx2", "urllib3", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if chromium() is None:
        print(f"ui-shots: no Chromium binary on PATH: {INSTALL_HINT}", file=sys.stderr)
        return 2

    from loopline.project import load_project
    from loopline.runner import run_project
    from loopline.steps import store_for

    from loopline_dev.stack import Stack, StackConfig

    project = load_project(args.project)
    model = args.model or next(iter(project.models))
    home = args.home.resolve()
    shutil.rmtree(home, ignore_errors=True)
    log.info("starting the embedded stack in %s", home)
    stack = Stack(StackConfig(home=home, parallelism=2)).start()
    try:
        log.info("loopline run %s --start %s --end %s (against %s)", project.project, args.start, args.end,
                 stack.config.mlflow_url)
        began = time.monotonic()
        summary = run_project(project, args.start, args.end, settings=stack.settings)
        log.info("the run took %.0f s:\n%s", time.monotonic() - began, summary.to_table())
        report_day = newest_report_day(store_for(stack.settings), project, model)
        token = sign_in(stack.config.api_url, stack.admin_password())
        shots = take(stack.config.api_url, token, args.out, project, model, report_day)
    finally:
        stack.stop()
    print("\n".join(str(p) for p in shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
