"""Figures: every user string (class names, tag values, titles) is drawn as written, never as math text, and their
labels and legends do not overlap."""
import io
import numpy as np
import pytest
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.text import Text

NAMES = ["$\\frac{$", "$x$", "a_b^c", "100$ and 5$", "\\alpha"]


def drawn(fig):
    "Every visible text of `fig` after it was saved as a PNG (which must succeed)."
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getbuffer().nbytes > 1000
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def assert_literal(fig, names=NAMES):
    "Each name is drawn in some text of `fig` exactly as written: the text holds it and is not parsed as math."
    try:
        texts = drawn(fig)
        for n in names:
            holding = [t for t in texts if n in t.get_text()]
            assert holding, f"{n!r} is not drawn; texts: {[t.get_text() for t in texts]}"
            assert all(not t.get_parse_math() for t in holding), f"{n!r} is parsed as math text"
            assert any(t.get_text() == n or t.get_text().startswith(n) or n in t.get_text() for t in holding)
    finally: plt.close(fig)


def test_bar_chart_and_image_grid_draw_names_as_written():
    from mlops_nb.core.plots import bar_chart, image_grid
    fig = bar_chart({NAMES[0]: [1] * len(NAMES), NAMES[1]: [2] * len(NAMES)}, NAMES, title=NAMES[2], ylabel=NAMES[3])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == NAMES                                            # the tick labels are the names, in order
    assert_literal(fig)
    assert_literal(image_grid(np.zeros((5, 1, 8, 8), np.uint8), NAMES, title=NAMES[4]))


def test_numeric_ticks_keep_their_math():
    "Only user strings lose math text: a log axis's tick labels (math text by design) still draw as powers."
    from mlops_nb.core.plots import literal
    fig, ax = plt.subplots(); ax.set_yscale("log"); ax.plot([1, 10, 1000]); ax.set_title("$x$")
    literal(fig); drawn(fig)
    assert not ax.title.get_parse_math()
    assert all(t.get_parse_math() for t in ax.get_yticklabels())
    plt.close(fig)


def test_stage_figures_draw_class_names_as_written():
    from mlops_nb.build.data import Dataset, plot_class_balance, plot_samples
    from mlops_nb.build.evaluate import Evaluation, plot_confusion, plot_mistakes
    k = len(NAMES); rng = np.random.default_rng(0)
    y = np.repeat(np.arange(k), 6); split = np.tile(np.array([0, 0, 0, 1, 2, 2], np.uint8), k)
    ds = Dataset(rng.integers(0, 255, (len(y), 1, 8, 8), dtype=np.uint8), y, split, list(NAMES))
    assert_literal(plot_class_balance(ds))
    assert_literal(plot_samples(ds, per_class=1))
    yt = y[split == 2]; proba = np.eye(k)[(yt + 1) % k] * 0.9 + 0.02
    ev = Evaluation({}, [], np.ones((k, k), int), list(NAMES), proba, yt)
    assert_literal(plot_confusion(ev))
    assert_literal(plot_mistakes(ev, ds, k=len(yt)))


def test_monitor_and_analysis_figures_draw_names_as_written():
    from mlops_nb.monitor.report import plot_classes, plot_per_class, plot_slices
    from mlops_nb.monitor import analyze as an
    k = len(NAMES)
    f = {"prediction": {"reference": [3] * k, "counts": [2] * k},
         "per_class": [{"class": n, "recall": 0.5, "recall_low": 0.2, "recall_high": 0.8, "expected_recall": 0.6} for n in NAMES],
         "slices": [{"slice": f"camera={n}", "rows": 50, "accuracy": 0.5, "estimated_accuracy": 0.6} for n in NAMES]}
    assert_literal(plot_classes(f, NAMES))
    assert_literal(plot_per_class(f))
    assert_literal(plot_slices(f), [f"camera={n}" for n in NAMES])
    x = np.zeros((k, 1, 8, 8), np.uint8)
    assert_literal(an.plot_occlusion(x, np.zeros((k, 8, 8)), NAMES))
    pairs = [{"true": n, "predicted": NAMES[0], "count": 1, "rows": [i]} for i, n in enumerate(NAMES)]
    assert_literal(an.plot_confused(x, pairs), [f"{n}->{NAMES[0]} (1)" for n in NAMES])


def test_a_figure_that_cannot_be_drawn_names_the_text(monkeypatch):
    "Should matplotlib still fail on a label, the error names it (ingest says which class), not only matplotlib's words."
    from mlops_nb.core.plots import bar_chart
    real = Text._get_layout
    def boom(self, renderer):
        if self.get_text() == "cats\u2603": raise ValueError("no glyph")
        return real(self, renderer)
    monkeypatch.setattr(Text, "_get_layout", boom)
    with pytest.raises(ValueError, match=r"images per class.*'cats\u2603'.*no glyph"):
        bar_chart({"train": [1, 2]}, ["dogs", "cats\u2603"], title="images per class and split")


# --- layout: labels apart, the legend beside the bars -------------------------------------------------------------------

def boxes(fig, texts):
    r = fig.canvas.get_renderer()
    return [t.get_window_extent(r) for t in texts if t.get_visible() and t.get_text()]


def assert_apart(fig):
    "No two tick labels overlap, none leaves the figure, and no legend covers a bar."
    from matplotlib.patches import Rectangle
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = boxes(fig, ax.get_xticklabels())
        for i, a in enumerate(ticks):
            assert fig.bbox.x0 <= a.x0 and a.x1 <= fig.bbox.x1 and a.y0 >= fig.bbox.y0, f"tick label {i} leaves the figure"
            for j, b in enumerate(ticks[i + 1:], i + 1): assert not a.overlaps(b), f"tick labels {i} and {j} overlap"
        leg = ax.get_legend()
        if leg is not None:
            lb = leg.get_window_extent(fig.canvas.get_renderer())
            bars = [p.get_window_extent() for p in ax.patches if isinstance(p, Rectangle) and p.get_height()]
            assert bars and not any(lb.overlaps(b) for b in bars), "the legend covers bars"
            assert not lb.overlaps(ax.title.get_window_extent()), "the legend covers the title"
    plt.close(fig)


def test_latency_histogram_labels_do_not_overlap():
    "The QA page's load-test histogram, as the apptest stage draws it."
    from mlops_nb.deploy.apptest import BUCKETS_MS
    from mlops_nb.core.plots import bar_chart
    edges = (0, *BUCKETS_MS, float("inf"))
    h = {f"<= {hi:g} ms" if hi != float("inf") else f"> {lo:g} ms": 3 * i for i, (lo, hi) in enumerate(zip(edges, edges[1:]))}
    assert_apart(bar_chart({"requests": list(h.values())}, list(h), title="load test latency", ylabel="requests"))


def test_slice_plot_labels_apart_and_legend_beside_the_bars():
    from mlops_nb.monitor.report import plot_slices
    sl = [{"slice": f"camera=parking-lot-{i}", "rows": 100 - i, "accuracy": 0.97, "estimated_accuracy": 0.96} for i in range(12)]
    assert_apart(plot_slices({"slices": sl}))
    assert_apart(plot_slices({"slices": sl[:3]}))


def test_class_balance_labels_apart():
    from mlops_nb.core.plots import bar_chart
    for names in ([str(i) for i in range(10)], [f"a rather long class name {i}" for i in range(15)]):
        assert_apart(bar_chart({"train": [9] * len(names), "val": [3] * len(names), "test": [3] * len(names)}, names, title="images per class"))
