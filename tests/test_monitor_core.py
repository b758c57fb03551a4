"""core/monitor.py: folding events into a RunView, the bounded series and the downsampler."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from ftwizard.core.events import EventTail
from ftwizard.core.monitor import RunView, Series, diagnose_view, downsample, fmt_duration, view_from_events


def train_ev(step, loss, t=None, max_steps=100, **kw):
    ev = {"type": "train", "t": 1000.0 + step if t is None else t, "step": step, "max_steps": max_steps,
          "epoch": step / max_steps, "loss": loss, "lr": 2e-4, "grad_norm": 0.5, "tokens_per_s": 1000.0,
          "tokens": step * 100, "elapsed_s": float(step), "mem": {"rss_gib": 0.5 + step / 1000}}
    ev.update(kw)
    return ev


def test_phases_before_first_step_say_what_happens():
    v = RunView()
    assert v.phase_text() == "waiting for the training process to start"
    v.apply([{"type": "phase", "t": 1.0, "phase": "started", "detail": "pid 12"},
             {"type": "phase", "t": 2.0, "phase": "loading_model", "detail": "/models/llama", "progress": 0.43}])
    assert not v.started_training
    assert v.phase_text() == "loading the model 43%: /models/llama"
    v.apply([{"type": "phase", "t": 3.0, "phase": "tokenizing", "detail": "1204 rows, max_length 2048"}])
    assert v.phase_text() == "tokenizing: 1204 rows, max_length 2048"
    assert [p for p, _ in v.phases] == ["started", "loading_model", "tokenizing"]


def test_train_eval_end_fold_into_numbers_and_series():
    evs = [{"type": "phase", "t": 999.0, "phase": "training", "detail": "", "max_steps": 100, "start_step": 0}]
    evs += [train_ev(s, 3.0 - s * 0.01) for s in range(1, 51)]
    evs += [{"type": "eval", "t": 1025.5, "step": 25, "eval_loss": 2.9},
            {"type": "eval", "t": 1050.5, "step": 50, "eval_loss": 2.8}]
    v = view_from_events(evs)
    assert v.step == 50 and v.max_steps == 100 and v.progress == 0.5
    assert len(v.train_loss) == 50 and v.train_loss.xs[0] == 1 and v.train_loss.xs[-1] == 50
    assert math.isclose(v.loss, 2.5)
    assert v.best_eval == (50, 2.8) and v.eval_series.xs == [25, 50]
    assert v.lr == 2e-4 and v.grad_norm == 0.5 and v.tokens_per_s == 1000.0
    assert v.memory["cpu"].peak_gib == 0.55
    # one step per second from the time stamps -> 50 steps left = 50 s, no wall clock involved
    assert math.isclose(v.steps_per_s(), 1.0) and math.isclose(v.eta_s(), 50.0)
    before = v.version
    v.apply([{"type": "end", "t": 1100.0, "state": "completed", "reason": None, "output": "/x/output",
              "elapsed_s": 101.0, "step": 50}])
    assert v.version == before + 1 and v.end.state == "completed" and v.elapsed_s == 101.0
    assert v.apply([]) is False


def test_gpu_memory_peak_is_max_over_run():
    mem = lambda p: {"cuda": [{"device": 0, "allocated_gib": p - 1, "reserved_gib": p + 1, "peak_gib": p},
                              {"device": 1, "allocated_gib": 1.0, "reserved_gib": 2.0, "peak_gib": 3.0}]}
    v = view_from_events([train_ev(1, 2.0, mem=mem(10.0)), train_ev(2, 1.9, mem=mem(12.5)),
                          train_ev(3, 1.8, mem=mem(11.0))])
    assert v.memory["cuda:0"].peak_gib == 12.5 and v.memory["cuda:0"].allocated_gib == 10.0
    assert v.memory["cuda:1"].peak_gib == 3.0 and v.peak_memory_gib == 12.5


def test_resume_rewinds_repeated_steps():
    evs = [train_ev(s, 2.0) for s in range(1, 16)]  # killed at 15, checkpoint at 10
    evs += [{"type": "phase", "t": 2000.0, "phase": "started", "detail": "pid 2 (resume)"},
            {"type": "phase", "t": 2001.0, "phase": "training", "max_steps": 100, "start_step": 10}]
    v = view_from_events(evs)
    assert v.train_loss.xs[-1] == 10 and v.step == 10
    v.apply([train_ev(s, 1.0, t=2001.0 + s) for s in range(11, 21)])
    assert v.train_loss.xs == list(range(1, 21))
    assert v.train_loss.ys[9] == 2.0 and v.train_loss.ys[10] == 1.0
    # a repeated step without a phase event (an older trainer) also rewinds
    v.apply([train_ev(18, 0.5, t=3000.0)])
    assert v.train_loss.xs[-1] == 18 and len(v.train_loss) == 18 and v.loss == 0.5


def test_nonfinite_values_are_recorded_not_plotted():
    v = view_from_events([train_ev(1, 2.0), train_ev(2, float("nan")), train_ev(3, float("inf"), grad_norm=float("inf"))])
    assert v.train_loss.xs == [1]
    assert (2, "loss") in [(s, m) for s, m, _ in v.nonfinite]
    assert math.isinf(v.grad_norm)
    codes = [w.code for w in diagnose_view(v)]
    assert codes[0] == "nan-loss"


def test_nan_survives_a_json_round_trip():
    line = json.dumps(train_ev(7, float("nan")), allow_nan=True)
    v = view_from_events([json.loads(line)])
    assert v.nonfinite and v.nonfinite[0][0] == 7


def test_warning_events_dedup_and_merge_with_doctor():
    w = {"type": "warning", "t": 1.0, "code": "rows-without-trained-tokens", "message": "3 rows dropped",
         "evidence": {"rows": 3}}
    v = view_from_events([w, dict(w), train_ev(1, 2.0)])
    assert len(v.warnings) == 1
    found = diagnose_view(v)
    assert [x.code for x in found] == ["rows-without-trained-tokens"] and found[0].evidence == {"rows": 3}


def test_series_is_bounded_and_keeps_spikes():
    s = Series(cap=1000)
    for i in range(10_000):
        s.append(i, 100.0 if i == 7777 else 1.0)
    assert len(s) <= 1000 and s.compactions > 0
    assert 100.0 in s.ys and s.xs == sorted(s.xs) and s.xs[-1] == 9999
    assert s.max_y == 100.0 and s.min_y == 1.0


def test_downsample_keeps_the_shape_reading_each_point_once():
    from reads import Reads

    n = 100_000
    xs = Reads(range(n))
    ys = Reads(math.sin(i / 5000) + (5.0 if i == 54321 else 0.0) for i in range(n))
    dx, dy = downsample(xs, ys, 400)
    # the cost, counted rather than timed: every y once (in C-level slices), an x per point kept
    assert ys.reads == n and xs.reads == len(dx)
    assert len(dx) <= 400 and dx == sorted(dx)
    assert max(dy) == max(ys) and min(dy) == min(ys)  # extremes survive
    assert 54321 in dx
    assert downsample(xs[:10], ys[:10], 400) == (xs[:10], ys[:10])
    assert downsample([], [], 10) == ([], [])


def test_incremental_equals_all_at_once():
    evs = [train_ev(s, 3.0 / s) for s in range(1, 300)]
    evs[100:100] = [{"type": "eval", "t": 1100.5, "step": 100, "eval_loss": 1.0}]
    whole = view_from_events(evs)
    parts = RunView()
    for i in range(0, len(evs), 7):
        parts.apply(evs[i:i + 7])
    assert parts.train_loss.xs == whole.train_loss.xs and parts.train_loss.ys == whole.train_loss.ys
    assert parts.eta_s() == whole.eta_s() and parts.best_eval == whole.best_eval


def test_tail_of_a_file_written_by_another_process_with_partial_lines(tmp_path):
    """A writer process appends half lines; the view only ever sees whole events."""
    path = tmp_path / "events.jsonl"
    path.write_text("")
    code = (
        "import json, sys, time\n"
        "fh = open(sys.argv[1], 'a')\n"
        "for s in range(1, 201):\n"
        "    line = json.dumps({'type': 'train', 't': 1000.0 + s, 'step': s, 'max_steps': 200, 'loss': 1.0 / s})\n"
        "    h = len(line) // 2\n"
        "    fh.write(line[:h]); fh.flush(); fh.write(line[h:] + '\\n'); fh.flush()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    tail, v = EventTail(path), RunView()
    while proc.poll() is None:
        v.apply(tail.read_new())
    v.apply(tail.read_new())
    assert tail.bad_lines == 0
    assert v.train_loss.xs == list(range(1, 201)) and v.step == 200


def test_fmt_duration():
    assert fmt_duration(None) == "-"
    assert fmt_duration(45) == "45 s"
    assert fmt_duration(125) == "2 min 05 s"
    assert fmt_duration(38 * 60) == "38 min"
    assert fmt_duration(3 * 3600 + 5 * 60) == "3 h 05 min"


def test_a_real_run_folds_completely(tiny_config, start_run, wait_run):
    """The events a real tiny training run writes give every step, the evals and the end."""
    run_dir = start_run(tiny_config(steps=12))
    info = wait_run(run_dir)
    assert info.state == "completed", info.reason
    from ftwizard.core.events import read_events

    raw = read_events(run_dir)
    v = view_from_events(raw)
    # the trainer writes only what the schema names (events.py): no unknown type, no stray field
    from ftwizard.core.events import UnknownEvent, parse_event

    strays = [(e.TYPE, e.extra) for e in map(parse_event, raw) if isinstance(e, UnknownEvent) or e.extra]
    assert strays == []
    assert v.train_loss.xs == list(range(1, 13))
    assert v.eval_series.xs == [6, 12]
    assert v.end.state == "completed" and v.end.output.endswith("output")
    assert v.memory["cpu"].peak_gib > 0 and v.info["parameters"]["trainable"] > 0
    assert v.phase == "saving" and v.eta_s() == 0.0


def test_incremental_downsampler_matches_and_follows_changes():
    from ftwizard.core.monitor import Downsampler

    s, d = Series(cap=1_000_000), Downsampler()
    for i in range(1, 50_001):
        s.append(i, math.sin(i / 300) + (9.0 if i == 31_337 else 0.0))
    xs, ys = d.points(s, 200)
    assert len(xs) <= 200 and xs == sorted(xs) and max(ys) == max(s.ys) and min(ys) == min(s.ys) and 31_337 in xs
    for i in range(50_001, 50_101):  # growth: only the new part is computed
        s.append(i, -5.0 if i == 50_050 else 0.0)
    xs2, ys2 = d.points(s, 200)
    assert xs2[-1] == 50_100 and min(ys2) == -5.0 and 31_337 in xs2
    s.truncate_from(40_000)  # a resume rewinds: the cache must not show the dropped points
    xs3, ys3 = d.points(s, 200)
    assert xs3[-1] == 39_999 and max(xs3) < 40_000 and min(ys3) > -5.0


def test_a_chart_frame_reads_the_new_points_only_whatever_the_history():
    """The incremental downsampler reads each point once, when it arrives: a frame after k new points
    reads k + at most 8 elements (the kept extremes' x, the last point) with 1,000 points of history as
    with 100,000 (it used to re-read the open bucket: up to history / (width / 4) points a frame), and
    draws the same points as a fresh downsampler would."""
    from reads import Reads

    from ftwizard.core.monitor import Downsampler

    per_frame = {}
    for history in (1_000, 100_000):
        s, d = Series(cap=1_000_000), Downsampler()
        for i in range(1, history + 1):
            s.append(i, math.sin(i / 300))
        d.points(s, 200)
        s.xs, s.ys = Reads(s.xs), Reads(s.ys)
        reads = []
        for frame in range(40):
            for i in range(7):  # 7 new points a frame, one of them a new extreme now and then
                step = history + frame * 7 + i + 1
                s.append(step, 5.0 if step % 97 == 0 else math.cos(step))
            before = s.xs.reads + s.ys.reads
            got = d.points(s, 200)
            reads.append(s.xs.reads + s.ys.reads - before)
            assert d.touched == 7
            plain = Series(cap=1_000_000)
            plain.xs, plain.ys = list(s.xs), list(s.ys)
            assert got == Downsampler().points(plain, 200), (history, frame)
        per_frame[history] = max(reads)
    # 7 new points + the x of up to 3 extremes' pairs (a closed bucket, the open one) + the last point
    assert max(per_frame.values()) <= 7 + 8, per_frame


# ------------------------------------------------------------------------- per kind and per rank


def test_kind_metrics_fold_into_series_and_rewind_with_a_resume():
    from ftwizard.core.monitor import kind_rows

    evs = [train_ev(s, 0.69, reward_chosen=0.01 * s, reward_rejected=-0.02 * s, reward_margin=0.03 * s,
                    reward_accuracy=min(1.0, 0.5 + 0.05 * s)) for s in range(1, 11)]
    v = view_from_events(evs)
    rows = kind_rows(v, "dpo")
    assert [r.label for r in rows] == ["chosen reward", "rejected reward", "margin", "accuracy"]
    assert rows[2].series.xs == list(range(1, 11)) and math.isclose(rows[2].latest, 0.3)
    assert rows[3].text() == "100%"
    v.apply([train_ev(6, 0.7, reward_margin=-1.0)])  # resumed from step 5: steps 6.. again
    assert v.kind_series["reward_margin"].xs == [1, 2, 3, 4, 5, 6] and v.kind_series["reward_margin"].ys[-1] == -1.0
    assert v.kind_series["reward_chosen"].xs == [1, 2, 3, 4, 5]


def test_grpo_rows_list_each_reward_function_and_kto_its_labels():
    from ftwizard.core.monitor import kind_rows

    g = view_from_events([train_ev(1, 0.0, reward_mean=-0.75, reward_std=0.5, completion_length_mean=12.0,
                                   clipped_ratio=1.0, zero_std_ratio=0.25,
                                   rewards={"numeric_match": 0.25, "length_penalty": -1.0})])
    assert [(r.label, r.text()) for r in kind_rows(g, "grpo")] == [
        ("reward mean", "-0.750"), ("reward std", "0.500"), ("· length_penalty", "-1.000"),
        ("· numeric_match", "0.250"), ("completion len", "12"), ("no-spread groups", "25%"),
        ("cut at max len", "100%")]
    k = view_from_events([train_ev(1, 0.5, reward_desirable=0.2, reward_undesirable=-0.1, reward_margin=0.3, kl=0.0)])
    assert [r.key for r in kind_rows(k, "kto")] == ["reward_desirable", "reward_undesirable", "reward_margin", "kl"]
    c = view_from_events([train_ev(1, 2.0, perplexity=math.exp(2.0))])
    assert [r.key for r in kind_rows(c, "cpt")] == ["perplexity"] and kind_rows(c, "dpo") == []


def _ranks_ev(step, r0, r1, gpu=False):
    def one(rank, compute, peak):
        if gpu:
            return {"rank": rank, "step": step, "compute_s": compute,
                    "cuda": [{"device": 0, "gpu": rank + 2, "allocated_gib": peak - 1, "reserved_gib": peak + 1,
                              "peak_gib": peak, "peak_reserved_gib": peak + 1}]}
        return {"rank": rank, "step": step, "compute_s": compute, "rss_gib": peak, "peak_rss_gib": peak}
    mine = one(0, *r0)
    mem = {k: v for k, v in mine.items() if k not in ("rank", "step", "compute_s")}
    return train_ev(step, 1.0, world_size=2, mem={**mem, "ranks": [mine, one(1, *r1)]})


def test_every_rank_reaches_the_view_and_the_slowest_is_named_only_when_it_lags():
    v = view_from_events([_ranks_ev(s, (0.40, 0.5), (0.42, 0.6)) for s in range(1, 6)])
    assert v.world_size == 2 and sorted(v.ranks) == [0, 1]
    assert v.ranks[1].memory_gib == 0.6 and v.ranks[1].compute_s == 0.42
    assert v.slowest_rank() is None  # 5% apart: even
    v.apply([_ranks_ev(6, (0.40, 0.5), (5.0, 0.6))])
    assert v.slowest_rank() is None  # one slow report (a checkpoint, a noisy neighbour) names nobody
    v.apply([_ranks_ev(6, (0.40, 0.5), (0.62, 0.6))])  # a stale report (same step) read again counts once
    assert list(v.ranks[1].recent).count(0.62) == 0
    v.apply([_ranks_ev(s, (0.40, 0.5), (0.62, 0.6)) for s in range(7, 10)])
    rank, ratio = v.slowest_rank()
    assert rank == 1 and math.isclose(ratio, 0.62 / 0.40)
    (w,) = [w for w in diagnose_view(v) if w.code == "slow-rank"]  # the doctor line names it too
    assert w.message.startswith("rank 1 (cpu) is the slowest: 1.5x") and "nvidia-smi" in w.advice[0]
    # on GPUs each rank's memory lands on its own card, named by NVML index (CUDA_VISIBLE_DEVICES=2,3)
    g = view_from_events([_ranks_ev(1, (0.3, 18.0), (0.3, 20.0), gpu=True)])
    assert set(g.memory) == {"cuda:2", "cuda:3"} and g.memory["cuda:3"].peak_gib == 20.0
    assert g.ranks[1].device == "cuda:3" and g.ranks[1].peak_gib == 21.0


@pytest.mark.slow
def test_a_real_two_process_run_reports_each_ranks_memory_and_compute(tiny_config, start_run, wait_run):
    """Two gloo processes through the same launcher: rank 0's train events carry both ranks' memory and
    their measured compute per step; the view has both."""
    cfg = tiny_config(steps=6, batch_size=2, longest_first=False, eval_steps=6, save_steps=6)
    cfg.dataset.validation = 0.0
    cfg.distributed.nproc_per_node = 2
    cfg.distributed.strategy = "ddp"
    run_dir = start_run(cfg)
    info = wait_run(run_dir)
    assert info.state == "completed", info.reason
    from ftwizard.core.events import read_events

    v = view_from_events(read_events(run_dir))
    assert v.world_size == 2 and sorted(v.ranks) == [0, 1]
    for st in v.ranks.values():
        assert st.device == "cpu" and st.memory_gib > 0.1 and st.peak_gib >= st.memory_gib
        assert 0 < st.compute_s < 60
