"""The HTML ScoreCard opens in headless Chromium with its charts drawn, not broken images."""

import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from hitl import HITer
from hitl.impact import ScoreCard
from hitl.impact.scorecard import COLORS
from test_impact_ledger import make_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# One colour that only each chart draws: the page's CSS uses none of them, and neither does
# Chromium's broken-image icon (which has some green and purple in it).
SIGNATURE = {"pay_multiple": COLORS["pay"], "split": COLORS["platform"], "labels": COLORS["human"],
             "hiters": COLORS["country"]}


def _screenshot(page, png):
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,2000",
                        page.as_uri()], check=True, timeout=120, capture_output=True)
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))[:, :, :3]
    return np.round(img * 255).astype(np.int16)


def _pixels(img, hex_colour, tol=30):
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(img - rgb).max(axis=2) <= tol).sum())


@pytest.fixture(scope="module")
def card():
    hiters = [HITer(f"h{j}", c) for j, c in enumerate(["TG", "TG", "KE", "KE", "FR", "FR", "GH", "MG"])]
    rng = np.random.default_rng(0)
    rounds = []
    for r in range(3):
        items = np.arange(r * 16, r * 16 + 16)
        rounds.append((items, np.arange(16) % 8, rng.uniform(3, 40, 16)))
    store = make_store(n_items=60, hiters=hiters, rounds=rounds)
    store.set_labels(3, np.arange(48), np.zeros(48, np.int64), "human", np.ones(48))
    store.set_labels(3, np.arange(48, 60), np.zeros(12, np.int64), "machine", np.ones(12))
    return ScoreCard.from_store(store)


def test_charts_render_in_chromium(card, tmp_path):
    paths = card.write(tmp_path / "card")
    img = _screenshot(paths["html"], tmp_path / "page.png")
    assert img.shape[:2] == (2000, 1200)
    counts = {name: _pixels(img, colour) for name, colour in SIGNATURE.items()}
    # Each chart's own colour covers a real area of the page: bars, dots, the split bar.
    assert counts["split"] > 5_000, counts
    assert counts["labels"] > 5_000, counts
    assert counts["hiters"] > 5_000, counts
    assert counts["pay_multiple"] > 250, counts  # eight dots

    # The same page with the images broken shows none of it: the check above can fail.
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,AAAA", paths["html"].read_text()))
    bad = _screenshot(broken, tmp_path / "broken.png")
    bad_counts = {name: _pixels(bad, colour) for name, colour in SIGNATURE.items()}
    assert all(v < 50 for v in bad_counts.values()), bad_counts
