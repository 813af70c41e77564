"""Borrowing on the pages (issue 29), in headless Chromium against a real `quotalang serve` of a lending policy.

The tree (GPUs): root 8, all carved (own room 0); a 4 lend 2 (guarantee 2); b 4 borrow 2 (guarantee 4).
b's Deployment of 6 × (1 GPU, 500m cpu) is admitted: T 4 − 6 = −2 ≥ −2, root T 0 + a's min(2, 4) − 2 = 0 ≥ 0.
So b holds 4 within its hard and borrows 2 (from root's pool); a's 2 are lent out (root's T cannot drop).
The second bar is a share of hard + borrow: b's 6 → within 4/6 = 66.67 %, borrowed 2/6 = 33.33 %;
a's 4 → lent out 2/4 = 50 %. The tree prints only the figures that are not 0; root (which lends and
borrows nothing) gets no second bar.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.pages.conftest import Served, open_page, screenshot, serve
from tests.pages.test_browser import _width
from tests.quotalang.test_tree_borrowing import POLICY as TREE
from tests.server.webhook_helpers import deployment

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

GPU = "requests.nvidia.com/gpu"
# test_tree_borrowing's tree (and limits.cpu: root 10, a 4, b 4), charged through the shipped kind rules.
POLICY = 'import "quotalang:policies"\n\nsettings {\n  group label "team"\n}\n\n' + TREE


@pytest.fixture(scope="module")
def lending(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("pages-lending")
    (folder / "policy").mkdir()
    (folder / "policy" / "org.quota").write_text(POLICY)
    with serve(folder, folder / "policy") as server:
        assert server.admit(deployment("train", "b", replicas=6, cpu="500m", gpu=1))["allowed"]
        yield server


@pytest.fixture
def page(browser: Browser, lending: Served) -> Iterator[Page]:
    with open_page(browser, lending.base) as opened:
        yield opened


def test_the_tree_shows_own_borrowed_and_lent_out_with_a_legend(page: Page, lending: Served) -> None:
    page.goto("/")
    legend = page.locator(".lead .legend")
    expect(legend).to_contain_text("held within its hard")
    expect(legend).to_contain_text("lent out (others hold it)")
    expect(legend).to_contain_text("borrowed beyond its hard")
    # b holds 6 of hard 4 + borrow 2: borrowing, not over
    expect(page.locator(f'[data-bars="b"] > [data-k="{GPU}"]')).not_to_have_class(re.compile(r"\bover\b"))
    b = page.locator(f'[data-bars="b"] > [data-k="{GPU}"] .lend')
    expect(b.locator(".ln")).to_have_text("within hard 4 · borrowed 2 (from root 2)")  # a figure of 0 is left out
    # read as the text beside it (as the tree's other bars are), so hidden from screen readers
    assert b.locator(".bar.lb").get_attribute("aria-hidden") == "true"
    assert abs(_width(page, f'[data-bars="b"] > [data-k="{GPU}"] .lb i.o') - 66.67) < 0.01
    assert abs(_width(page, f'[data-bars="b"] > [data-k="{GPU}"] .lb i.b') - 33.33) < 0.01
    a = page.locator(f'[data-bars="a"] > [data-k="{GPU}"] .lend .ln')
    expect(a).to_have_text("lent out 2")
    assert a.locator("xpath=..").locator(".lb i.o, .lb i.b").count() == 0  # empty segments are not drawn
    assert abs(_width(page, f'[data-bars="a"] > [data-k="{GPU}"] .lb i.l') - 50.0) < 0.01
    # drawn, not only styled: the lent-out segment is half its bar's inner width
    drawn = page.eval_on_selector(f'[data-bars="a"] > [data-k="{GPU}"] .lb i.l',
                                  "el => el.getBoundingClientRect().width * 100 / el.parentElement.clientWidth")
    assert abs(drawn - 50.0) < 1.0
    # root lends and borrows nothing (nothing is lent out of a root): on its GPU row, lent or not, no second bar
    assert page.locator(f'[data-bars="root"] > [data-k="{GPU}"] .lend').count() == 0
    expect(page.locator(".lead")).to_contain_text("drawn only while a key is lent out or borrowed")
    screenshot(page, "tree-borrowing")


def test_a_group_page_has_a_borrowing_table(page: Page) -> None:
    page.goto("/groups/a")
    row = page.locator(f'tr.lendrow[data-g="a"][data-f="lend {GPU}"]')
    cells = {f: row.locator(f'td[data-f="{f}"]').inner_text()
             for f in ("lend", "borrow", "guarantee", "within", "lent_out", "borrowed", "borrowed_from")}
    assert cells == {"lend": "2", "borrow": "0", "guarantee": "2", "within": "0", "lent_out": "2",
                     "borrowed": "0", "borrowed_from": "-"}
    expect(page.locator("#borrowing + .lead")).to_contain_text("The guarantee (hard − lend) is never lent.")
    page.goto("/groups/b")
    row = page.locator(f'tr.lendrow[data-g="b"][data-f="lend {GPU}"]')
    assert row.locator('td[data-f="borrowed_from"]').inner_text() == "root 2"
    label = row.locator(".bar.lb").get_attribute("aria-label")
    assert label == f"{GPU}: 4 held within its hard, 0 lent out, 2 borrowed"
    screenshot(page, "group-borrowing")


def test_the_figures_follow_an_admission_without_a_reload(page: Page, lending: Served) -> None:
    # a starts 2 GPUs: within its guarantee (T 4 → 2, share min(2, 2) = 2: root untouched), so admitted.
    # a then holds 2 within its hard (2/4 = 50 %); its lendable 2 are still held by b: lent out 2.
    page.goto("/groups/a")
    page.evaluate("window.__notReloaded = true")
    tree = page.context.new_page()
    tree.goto("/")
    assert lending.admit(deployment("serve", "a", replicas=2, cpu="500m", gpu=1))["allowed"]
    expect(page.locator('tr.lendrow[data-g="a"] td[data-f="within"]')).to_have_text("2", timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True
    assert abs(_width(page, "tr.lendrow[data-g=a] .lb i.o") - 50.0) < 0.01
    line = tree.locator(f'[data-bars="a"] > [data-k="{GPU}"] .lend .ln')
    expect(line).to_have_text("within hard 2 · lent out 2", timeout=15_000)
    assert abs(_width(tree, f'[data-bars="a"] > [data-k="{GPU}"] .lb i.o') - 50.0) < 0.01  # drawn by the script
    tree.close()
