"""Times a cimlake report in headless Chromium: opening the file until the page is drawn, the
page's own script time, a search and a sort, over several runs (median).

    python render.py REPORT.html [RUNS]

Run with the Python of tests/report/setup.sh (Playwright driving Debian's chromium).
"""
import os
import statistics
import sys
import time

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def main():
    report, runs = os.path.abspath(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5
    opened, script, search, sort = [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CIMLAKE_CHROMIUM", "/usr/bin/chromium"), args=ARGS)
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            t = time.perf_counter()
            page.goto("file://" + report)
            page.wait_for_selector("body[data-ready='1']")
            # The first frame after the script: the page is drawn.
            page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            opened.append((time.perf_counter() - t) * 1000)
            script.append(int(page.get_attribute("body", "data-rendered-ms")))
            t = time.perf_counter()
            page.fill("#f-search", "powershell")
            search.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            page.click("#hits th[data-col=host]")
            sort.append((time.perf_counter() - t) * 1000)
            assert not errors, errors
            page.close()
        browser.close()
    med = statistics.median
    print(f"{report}: {os.path.getsize(report) / 1e6:.1f} MB; median of {runs}: opened and drawn {med(opened):.0f} ms "
          f"(script {med(script):.0f} ms), search {med(search):.0f} ms, sort by host {med(sort):.0f} ms")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
