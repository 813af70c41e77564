"""The pages in headless Chromium against a real `quotalang serve`: what a person sees and can do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import expect

from quotalang.quantity import parse_quantity
from tests.pages.conftest import EXAMPLES, Served, relabelled, screenshot, workload

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

A100 = "requests.nvidia.com/gpu.A100"
TOO_BIG_MESSAGE = (
    "quota exceeded in group root/ai-platform/nlp/bob: requests.nvidia.com/gpu.A100: "
    "requested 21 (1 × Chief 1 + 5 × Worker 4), used 0 of 16, 16 free"
)


def _row(served: Served, group: str, key: str) -> dict[str, str]:
    rows = served.api(f"/api/groups/{group}")["limits"]
    found: dict[str, str] = next(r for r in rows if r["key"] == key)
    return found


def _share(row: dict[str, str], field: str) -> float:
    return parse_quantity(row[field]).nanos * 100 / parse_quantity(row["hard"]).nanos


def _drawn(page: Page, selector: str) -> float:
    """The drawn width of a bar segment, as a percentage of its bar's inner width."""
    value: float = page.eval_on_selector(
        selector, "el => el.getBoundingClientRect().width * 100 / el.parentElement.clientWidth")
    return value


def test_the_tree_lists_every_group(page: Page, served: Served) -> None:
    page.goto("/")
    names = page.eval_on_selector_all("#tree li.group", "els => els.map(e => e.dataset.name)")
    expected = [g["name"] for g in served.api("/api/groups")]
    assert len(names) == 22
    assert sorted(names) == sorted(expected)
    assert page.locator("#tree li.group[data-name=vision] .badge").first.inner_text() == "warn"
    screenshot(page, "tree")


def test_a_bar_is_as_wide_as_the_json_api_says(page: Page, served: Served) -> None:
    row = _row(served, "alice", A100)
    expected = _share(row, "used") - _share(row, "reserved")  # own, observed usage
    assert expected > 0  # the fixture's TFJob charges alice 9 of 16
    page.goto("/")
    assert abs(_drawn(page, f'[data-bars="alice"] > [data-k="{A100}"] .bar i.o') - expected) < 1.0
    page.goto("/groups/alice")
    assert abs(_drawn(page, f'tr[data-g="alice"][data-k="{A100}"] .bar i.o') - expected) < 1.0
    carved = _share(_row(served, "nlp", A100), "carved")
    page.goto("/groups/nlp")
    assert abs(_drawn(page, f'tr[data-g="nlp"][data-k="{A100}"] .bar i.c') - carved) < 1.0
    page.goto("/groups/alice")
    cells = page.locator(f'tr[data-g="alice"][data-k="{A100}"] td')
    assert [cells.nth(i).inner_text() for i in range(1, 6)] == [row[f] for f in
                                                               ("hard", "carved", "used", "reserved", "free")]
    screenshot(page, "group")


def test_the_filter_finds_bob(page: Page) -> None:
    page.goto("/")
    page.focus("#filter")
    page.keyboard.type("bob")
    visible = page.eval_on_selector_all("#tree li.group:not([hidden])", "els => els.map(e => e.dataset.name)")
    assert visible == ["root", "ai-platform", "nlp", "bob"]
    assert page.locator("#matches").inner_text() == "4 shown"
    page.keyboard.press("Enter")  # without the script: the server filters the same way
    page.wait_for_url(re.compile(r"\?q=bob$"))
    shown = page.eval_on_selector_all("#tree li.group", "els => els.map(e => e.dataset.name)")
    assert shown == ["root", "ai-platform", "nlp", "bob"]


def test_what_if_shows_the_documented_denial(page: Page) -> None:
    page.goto("/what-if")
    page.fill("#workload", (EXAMPLES / "workloads" / "tfjob-too-big.yaml").read_text())
    page.click("button[type=submit]")
    assert page.locator("#verdict").inner_text().startswith("TFJob bert-pretrain-xl")
    assert "denied" in page.locator("#verdict").inner_text()
    assert page.locator("#message").inner_text() == TOO_BIG_MESSAGE
    screenshot(page, "what-if")


def test_what_if_reports_bad_yaml_in_the_page(page: Page) -> None:
    page.goto("/what-if")
    page.fill("#workload", "kind: [unclosed")
    response = None
    with page.expect_response("**/what-if") as info:
        page.click("button[type=submit]")
    response = info.value
    assert response.status == 400
    assert "is not YAML or JSON" in page.locator("#result").inner_text()
    assert page.input_value("#workload") == "kind: [unclosed"  # kept, to fix


def _limit_field(page: Page, key: str) -> Locator:
    """The group's own field for `key` (the new child's fieldset has one of the same name)."""
    return page.get_by_role("group", name=re.compile("^Limits of")).get_by_label(key, exact=True)


def test_proposing_too_much_a100_for_alice_shows_e105(page: Page, tmp_path: Path) -> None:
    page.goto("/propose?group=alice")
    field = _limit_field(page, A100)
    assert field.input_value() == "16"
    field.fill("100")
    page.get_by_role("button", name="Check the change").click()
    errors = page.locator("#review li.error").all_inner_texts()
    assert any("E105" in e and "children of nlp over-allocate requests.nvidia.com/gpu.A100: 132 > 128"
               in e and "(alice 100, bob 16, carol 16)" in e for e in errors), errors
    patch = page.locator("#review pre.patch").inner_text()
    assert f"-  {A100}  16" in patch and f"+  {A100}  100" in patch
    screenshot(page, "propose")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the diff").click()
    download = info.value
    assert download.suggested_filename == "quotalang-alice.diff"
    saved = tmp_path / "change.diff"
    download.save_as(saved)
    text = saved.read_text()
    assert text.startswith("--- a/examples/policies/ai-platform.quota\n+++ b/examples/policies/ai-platform.quota")
    assert f"+  {A100}  100\n" in text


def test_proposing_a_limit_under_live_usage_names_the_group(page: Page) -> None:
    page.goto("/propose?group=alice")
    _limit_field(page, A100).fill("4")  # alice uses 9
    page.get_by_role("button", name="Check the change").click()
    over = page.locator("#review ul.over").inner_text()
    assert f"root/ai-platform/nlp/alice: {A100}: used 9 + carved 0 > 4 (was 16)" in over


def _width(page: Page, selector: str) -> float:
    value: str = page.eval_on_selector(selector, "el => el.style.width")
    return float(value.rstrip("%"))


def test_a_page_updates_after_an_admission_without_a_reload(page: Page, served: Served) -> None:
    page.goto("/groups/carol")
    used = page.locator(f'tr[data-g="carol"][data-k="{A100}"] td[data-f="used"]')
    assert used.inner_text() == "0"
    page.evaluate("window.__notReloaded = true")
    tree = page.context.new_page()
    tree.goto("/")
    segment = f'[data-bars="carol"] > [data-k="{A100}"] .bar i.o'
    # An idle group's tree bars are its first keys; once A100 is its fullest key, the tree shows it.
    assert tree.locator(segment).count() == 0
    assert served.admit(relabelled(workload("tfjob.yaml"), "carol", "bert-carol"))["allowed"]
    # (Polled from Python: the pages' CSP forbids the string eval wait_for_function uses.)
    expect(used).to_have_text("9", timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True
    expected = _share(_row(served, "carol", A100), "used")
    assert abs(_width(page, f'tr[data-g="carol"][data-k="{A100}"] .bar i.o') - expected) < 0.01
    expect(tree.locator(f'[data-bars="carol"] > [data-k="{A100}"] [data-f="used"]')).to_have_text("9", timeout=15_000)
    assert abs(_width(tree, segment) - expected) < 0.01
    tree.close()


FOCUSABLE = ("a[href], button, input:not([type=hidden]), select, textarea, summary, "
             "[tabindex]:not([tabindex='-1'])")


def _tab_through(page: Page) -> tuple[set[str], set[str]]:
    """Tab from the top of the page; the controls reached, and every visible control there is."""
    page.evaluate(f"""() => {{
        let i = 0;
        for (const el of document.querySelectorAll("{FOCUSABLE}")) {{
            // One stop per radio group: Tab enters the group, the arrow keys move within it.
            el.dataset.stop = el.type === "radio" ? "radio:" + el.name : "c" + (i++);
        }}
    }}""")
    controls = set(page.eval_on_selector_all(
        f"{FOCUSABLE}",
        "els => els.filter(e => e.checkVisibility()).map(e => e.dataset.stop)"))
    reached: set[str] = set()
    for _ in range(len(controls) + 10):
        page.keyboard.press("Tab")
        stop = page.evaluate("document.activeElement && document.activeElement.dataset.stop")
        if stop:
            reached.add(stop)
    return reached, controls


def test_keyboard_alone_reaches_every_control(page: Page) -> None:
    for path in ("/", "/groups/nlp", "/what-if", "/propose?group=alice"):
        page.goto(path)
        reached, controls = _tab_through(page)
        assert controls - reached == set(), f"{path}: not reachable with Tab: {sorted(controls - reached)}"
    # The new child's limits are folded away: the keyboard opens them and reaches them too.
    page.goto("/propose?group=alice")
    page.focus("#child")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    reached, controls = _tab_through(page)
    assert any(c for c in controls) and controls - reached == set()
    assert page.locator("#child-limit-1").is_visible()


def test_readable_at_200_percent_zoom(page: Page) -> None:
    """200 % zoom is half the CSS pixels: no page may need sideways scrolling at 640 px."""
    page.set_viewport_size({"width": 640, "height": 900})
    for path, name in (("/", "tree-zoom"), ("/groups/alice", None), ("/what-if", None), ("/propose?group=alice", None)):
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, f"{path} scrolls sideways by {wide} px at 640 px"
        if name:
            screenshot(page, name, full_page=False)
