"""featlt.progress: plain lines off a terminal (time injected, never slept), a bar on one."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from featlt import progress as progress_module
from featlt.progress import Progress, format_duration

LINE = re.compile(r"^extract train: (\d+)/1000 img \((\d+)%\), ([\d.]+) img/s, "
                  r"elapsed (\S+), ETA (\S+)$")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(stream: io.StringIO) -> list[tuple[str, ...]]:
    """(done, percent, rate, elapsed, ETA) of every line written; each must match LINE."""
    matches = [LINE.match(line) for line in stream.getvalue().splitlines()]
    assert all(matches), stream.getvalue()
    return [m.groups() for m in matches if m]


def test_off_a_terminal_a_line_each_30_seconds_or_10_percent():
    stream, clock = io.StringIO(), Clock()
    with Progress(1000, "extract train", "img", stream=stream, clock=clock) as progress:
        for seconds, n in ((10, 50), (10, 60)):  # 110 img in 20 s: 10 % crossed while quiet
            clock.now += seconds
            progress.update(n)
        assert stream.getvalue() == ""
        for seconds, n in ((10, 40),  # 150 img at 30 s: the time rule
                           (5, 10),  # 160 img: nothing
                           (5, 50),  # 210 img: another 10 % crossed, 10 s after the last line
                           (1, 10),  # 220 img: nothing
                           (30, 10),  # 230 img, 31 s after the last line: the time rule
                           (50, 770)):  # done: 100 % crossed
            clock.now += seconds
            progress.update(n)
    lines = _lines(stream)
    assert [line[0] for line in lines] == ["150", "210", "230", "1000"]
    assert lines[0] == ("150", "15", "5.0", "30s", "2m50s")  # 850 left at 5 img/s
    assert lines[1][:2] == ("210", "21")
    assert lines[-1][1:] == ("100", "8.3", "2m01s", "0s")  # no second line at the end


def test_a_short_run_writes_nothing_and_the_rate_skips_resumed_work():
    stream, clock = io.StringIO(), Clock()
    with Progress(1000, "extract train", "img", initial=500, stream=stream,
                  clock=clock) as progress:
        clock.now += 20
        progress.update(500)
    assert stream.getvalue() == ""
    progress = Progress(1000, "extract train", "img", initial=500, stream=stream, clock=clock)
    clock.now += 40
    progress.update(100)
    assert _lines(stream) == [("600", "60", "2.5", "40s", "2m40s")]  # 100 img in 40 s


def test_a_failed_run_writes_no_final_line():
    stream, clock = io.StringIO(), Clock()
    try:
        with Progress(1000, "extract train", "img", stream=stream, clock=clock) as progress:
            clock.now += 31
            progress.update(10)
            raise RuntimeError("decode failed")
    except RuntimeError:
        pass
    assert len(_lines(stream)) == 1


def test_on_a_terminal_a_tqdm_bar_and_no_lines():
    stream = io.StringIO()
    clock = Clock()
    with Progress(10, "fit-classifier", "head", stream=stream, terminal=True,
                  clock=clock) as progress:
        clock.now += 60
        progress.update(10)
    assert "\r" in stream.getvalue() and "10/10" in stream.getvalue()
    assert "ETA" not in stream.getvalue()


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 61, 3599, 7500)] == [
        "0s", "1m00s", "1m01s", "59m59s", "2h05m"]


@pytest.fixture
def lines_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No quiet period: every update off a terminal writes a line."""
    monkeypatch.setattr(progress_module, "LINE_INTERVAL_S", 0.0)


def test_extraction_reports_lines_into_a_log(lines_at_once, tmp_path, capsys):
    from featlt.extract.pipeline import ExtractConfig, extract_features
    from featlt.runtime import Runtime

    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
             y_train=np.repeat(np.arange(4), 10),
             x_test=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8),
             y_test=np.repeat(np.arange(4), 2), class_names=np.array(list("abcd")))
    config = ExtractConfig(model="pixels_4", data=f"npz:{data}", output=tmp_path / "f.h5",
                           batch_size=16, workers=0, dtype="float32")
    extract_features(config, Runtime(threads=1))
    err = capsys.readouterr().err
    assert re.search(r"^extract train: 16/40 img \(40%\), [\d.]+ img/s, elapsed \S+, ETA \S+$",
                     err, re.M), err
    assert "extract train: 40/40 img (100%)" in err and "extract test: 8/8 img (100%)" in err


def test_fit_classifier_reports_each_head_into_a_log(lines_at_once, tmp_path, capsys):
    from featlt.data.synthetic import write_synthetic_store
    from featlt.heads.workflow import fit_classifiers

    store = write_synthetic_store(tmp_path / "s.h5", n_classes=4, n_max=30, dim=8,
                                  n_test_per_class=5, n_val_per_class=5)
    fit_classifiers(store, ["ncm_cosine", "ncm_l2"], tmp_path / "heads", n_bootstrap=0)
    err = capsys.readouterr().err
    assert re.search(r"^fit-classifier: 1/2 head \(50%\), [\d.]+ head/s, elapsed \S+, ETA \S+$",
                     err, re.M), err
    assert "fit-classifier: 2/2 head (100%)" in err
