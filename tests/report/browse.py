"""Opens a cimlake report in headless Chromium (Playwright driving the system's browser) and
prints what a reader sees, as JSON, for tests/integration/report.rs to check.

    browse.py REPORT.html SCREENSHOT.png SPEC.json

SPEC: {"click": [detection, host, user, process_name]: the hit row to open,
       "host": a host to filter the hits by}
"""
import json
import os
import struct
import sys
import zlib

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def png_pixels(data):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def main():
    report, shot, spec = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
    out = {"errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CIMLAKE_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: out["errors"].append(m.type + ": " + m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: out["errors"].append("page error: " + str(e)))
        page.on("request", lambda r: out["errors"].append("network request: " + r.url) if not r.url.startswith(("file:", "data:", "about:")) else None)
        page.goto("file://" + report)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        out["rendered_ms"] = int(page.get_attribute("body", "data-rendered-ms"))
        cells = "Array.from(document.querySelectorAll('#hits tbody tr')).map(tr => Array.from(tr.cells).map(td => td.textContent))"
        out["rows"] = page.evaluate(cells)
        out["shown"] = page.inner_text("#shown")
        out["summary"] = page.inner_text("#summary")
        out["notes"] = page.inner_text("#notes")
        # The timeline: its size, what is drawn, and its pixels.
        svg = page.locator("#timeline-svg")
        box = svg.bounding_box()
        out["timeline"] = {"width": box["width"], "height": box["height"],
                           "risk_cells": page.evaluate("document.querySelectorAll('#timeline-svg rect[fill=\"#d92d20\"]').length"),
                           "mark_paths": page.evaluate("document.querySelectorAll('#timeline-svg path.marks').length")}
        w, h, px = png_pixels(svg.screenshot())
        out["timeline"]["png"] = [w, h]
        out["timeline"]["red_pixels"] = sum(1 for row in px for (r, g, b) in row if r > 180 and g < 150 and b < 150)
        out["timeline"]["dark_pixels"] = sum(1 for row in px for (r, g, b) in row if r < 60 and g < 60 and b < 80)
        page.screenshot(path=shot, full_page=False)
        # Sorting: the hits by time, reversed; the hits per host by count, ascending.
        page.click("#hits th[data-col=_time]")
        out["rows_by_time_desc"] = page.evaluate(cells)
        page.click("#hits th[data-col=_time]")
        page.click("#by-host th:nth-child(2)")
        out["hosts_by_count_asc"] = page.evaluate("Array.from(document.querySelectorAll('#by-host tbody tr')).map(tr => Array.from(tr.cells).map(td => td.textContent))")
        # Open one hit: its process tree, from the root to every leaf.
        want = spec["click"]
        index = next(i for i, r in enumerate(out["rows"]) if [r[2], r[3], r[4], r[5]] == want)
        page.locator("#hits tbody tr").nth(index).click()
        page.wait_for_selector("#detail h2")
        out["detail"] = page.inner_text("#detail")
        out["paths"] = page.evaluate("""() => Array.from(document.querySelectorAll('#tree li.proc')).filter(li => !li.querySelector('li.proc')).map(leaf => {
            const path = [];
            for (let li = leaf; li; li = li.parentElement.closest('li.proc')) {
                path.unshift([li.dataset.name, li.querySelector(':scope > .cmdline').textContent, li.className]);
            }
            return path;
        })""")
        out["connections"] = page.evaluate("Array.from(document.querySelectorAll('#detail table:not(.kv) tbody tr')).map(tr => Array.from(tr.cells).map(td => td.textContent))")
        # Filter by host; then search.
        page.select_option("#f-host", spec["host"])
        out["filtered_rows"] = page.evaluate(cells)
        out["filtered_shown"] = page.inner_text("#shown")
        out["hash"] = page.evaluate("location.hash")
        page.fill("#f-search", spec.get("search", ""))
        out["searched_rows"] = page.evaluate(cells)
        browser.close()
    print(json.dumps(out))
    # Leave without the interpreter's teardown racing the driver's threads.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
