"""The training doctor: live warnings with advice, from a run's curves. Pure functions, no UI.

`diagnose_events(events)` reads the events of a run (events.py); `diagnose_series(...)` reads curves
already held elsewhere (the monitor's `RunView`, through `monitor.diagnose_view`, which `ftwizard status`
shows too); both add `diagnose_kind(curves)`, the training kind's rules. They return a list of
`DoctorWarning(code, severity, message, evidence, advice)`; the evidence names the steps and values the
warning rests on. The same function serves the monitor (shown live) and the trainer (optional early
stopping: `should_stop(warnings)`).

Every rule is a deterministic threshold on bounded windows of the curves, so a check costs the same
at step 100 and at step 100,000:

| code               | fires when                                                                       |
|--------------------|----------------------------------------------------------------------------------|
| `nan-loss`         | the training or validation loss, or the grad norm, is NaN or infinite at any step |
| `exploding-grad`   | a grad norm is >= 10x the median of the 20 before it (at least 5 of them), and    |
|                    | >= 5.0 in absolute terms; the latest such step is the evidence                   |
| `overfitting`      | the last 3 validation losses each rose (total rise >= 1% of the first of them)   |
|                    | while the mean training loss over that span fell by >= 1%                        |
| `plateau`          | after >= 20 logged steps, the mean of the last 5 losses is within 2% of the mean  |
|                    | of the first 5, and no loss ever went 5% below that start                         |
| `memorising`       | the last 5 training losses are all below 0.05                                    |
| `diverging`        | the last 5 logged losses are all >= 3x the lowest of the first 5 (and >= 1.0      |
|                    | above it): the loss climbed away from where it started (error: the run is ended) |
| `dead-model`       | the last 10 logged grad norms are all 0, or the last 10 losses all sit within 2%  |
|                    | of ln(vocab size), the loss of a uniform guess, in a run that started >= 20%     |
|                    | below it (a pretrained model; error: the run is ended)                           |
| `grpo-no-signal`   | GRPO: every group had zero reward spread in each of the last 10 logs             |
|                    | (frac_reward_zero_std >= 0.999): advantages and loss are 0, nothing is learnt    |
|                    | (TRL #3857); the message says when the reward was also 0 everywhere              |
| `grpo-clipped`     | GRPO: in each of the last 10 logs >= 99% of completions hit                      |
|                    | grpo.max_completion_length                                                       |
| `preference-stuck` | DPO/ORPO/SimPO, after a warm-up of 10 logs: over the last 10 logs the mean reward  |
|                    | accuracy is within 0.5 +- 0.1 (chance), or the mean reward margin rose by < 0.01  |
|                    | over the first 5 logs' while accuracy stayed < 0.8: the pairs are not separated  |
| `chosen-unlearned` | DPO/ORPO/SimPO, after the warm-up: the mean chosen reward of the last 10 logs is  |
|                    | >= 0.1 below the first 5 logs' and fell at least half as far as the rejected     |
|                    | reward: the margin grows by pushing both answers down (likelihood displacement)  |
| `kto-one-label`    | KTO: in each of the last 10 logs the per-label rewards of one label are absent:  |
|                    | no batch held that label (one label in the data, or one far rarer than the other)|
| `throughput-drop`  | the median tokens/s of the last 5 steps is below 40% of the median of the 50     |
|                    | steps before them (at least 10 of them, the first 2 steps of a run skipped)      |

Thresholds are module constants; they are meant to catch the obvious cases early, not to be clever.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Iterable, Sequence

# thresholds (documented in the table above and in docs/monitor.md)
GRAD_FACTOR = 10.0
GRAD_MIN_ABS = 5.0
GRAD_WINDOW = 20
GRAD_MIN_HISTORY = 5
OVERFIT_EVALS = 3
OVERFIT_MIN_RISE = 0.01
OVERFIT_TRAIN_DROP = 0.01
PLATEAU_MIN_STEPS = 20
PLATEAU_HEAD = 5
PLATEAU_TOL = 0.02
PLATEAU_NEVER_BELOW = 0.05
MEMORISE_LOSS = 0.05
MEMORISE_LAST = 5
DIVERGE_HEAD = 5
DIVERGE_LOGS = 5
DIVERGE_FACTOR = 3.0
DIVERGE_MIN_RISE = 1.0
DEAD_LOGS = 10
DEAD_LOSS_TOL = 0.02
DEAD_START_BELOW = 0.2
GRPO_LOGS = 10
GRPO_ZERO_STD = 0.999
GRPO_CLIPPED = 0.99
PREF_WARMUP = 10      # logs before the preference rules look (the first steps move little)
PREF_WINDOW = 10      # the recent logs they judge
PREF_HEAD = 5         # the first logs they compare with
PREF_CHANCE = 0.1     # accuracy within 0.5 +- this is chance
PREF_MARGIN_RISE = 0.01
PREF_SEPARATED = 0.8  # accuracy at or above this: a flat margin is not "stuck"
CHOSEN_DROP = 0.1     # reward units (beta x log-ratio): how far the chosen reward must fall
CHOSEN_SHARE = 0.5    # ... and at least this share of the rejected reward's fall
KTO_LOGS = 10
TPS_RECENT = 5
TPS_BASELINE = 50
TPS_MIN_BASELINE = 10
TPS_SKIP_FIRST = 2
TPS_RATIO = 0.4

Curve = tuple[Sequence[float], Sequence[float]]  # (steps, values), steps increasing


@dataclass(frozen=True)
class DoctorWarning:
    code: str
    severity: str  # "error" (the run is broken) | "warning" (worth acting on)
    message: str
    evidence: dict = field(default_factory=dict)
    advice: tuple[str, ...] = ()

    def to_json(self) -> dict:
        d = asdict(self)
        d["advice"] = list(self.advice)
        return d


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


def _steps(xs: Sequence[float]) -> list[int]:
    return [int(x) for x in xs]


# ---------------------------------------------------------------------------------------- rules


def check_nonfinite(nonfinite: Sequence[tuple[int, str, float]]) -> DoctorWarning | None:
    if not nonfinite:
        return None
    step, metric, value = nonfinite[0]
    steps = sorted({int(s) for s, _, _ in nonfinite})
    return DoctorWarning(
        "nan-loss", "error",
        f"{metric.replace('_', ' ')} is {value} at step {step}: training has diverged",
        {"first_step": int(step), "metric": metric, "value": str(value), "steps": steps[:20]},
        ("lower train.learning_rate by 10x", "keep train.max_grad_norm at 1.0 (gradient clipping)",
         "use bf16 instead of fp16 (fp16 overflows)", "check the data for empty or absurdly long rows"))


def check_grad(grad: Curve) -> DoctorWarning | None:
    xs, ys = grad
    n = len(ys)
    if n <= GRAD_MIN_HISTORY:
        return None
    # scan only the recent part of the curve: bounded cost
    start = max(GRAD_MIN_HISTORY, n - 200)
    for i in range(n - 1, start - 1, -1):
        hist = ys[max(0, i - GRAD_WINDOW):i]
        if len(hist) < GRAD_MIN_HISTORY:
            break
        med = median(hist)
        if ys[i] >= GRAD_MIN_ABS and med > 0 and ys[i] >= GRAD_FACTOR * med:
            return DoctorWarning(
                "exploding-grad", "warning",
                f"grad norm jumped to {_fmt(ys[i])} at step {int(xs[i])} ({ys[i] / med:.0f}x the recent "
                f"median {_fmt(med)}): the learning rate is probably too high",
                {"step": int(xs[i]), "grad_norm": ys[i], "median_before": med,
                 "window_steps": [int(xs[max(0, i - GRAD_WINDOW)]), int(xs[i - 1])]},
                ("lower train.learning_rate (by 2-10x)", "keep train.max_grad_norm at 1.0",
                 "add warmup (train.warmup_ratio 0.03-0.1)"))
    return None


def check_overfitting(train: Curve, evals: Curve) -> DoctorWarning | None:
    ex, ey = evals
    if len(ey) < OVERFIT_EVALS:
        return None
    ex, ey = list(ex[-OVERFIT_EVALS:]), list(ey[-OVERFIT_EVALS:])
    if not all(b > a for a, b in zip(ey, ey[1:])):
        return None
    if ey[-1] - ey[0] < OVERFIT_MIN_RISE * abs(ey[0]):
        return None
    tx, ty = train
    # training loss around the first and the last of these evaluations (mean of the logged steps
    # from the previous evaluation up to it), so one noisy step does not decide
    lo = _index_at_or_after(tx, ex[0])
    hi = _index_at_or_after(tx, ex[-1] + 1)
    span = list(ty[lo:hi])
    if len(span) < 2:
        return None
    k = max(1, len(span) // 3)
    before, after = sum(span[:k]) / k, sum(span[-k:]) / k
    if after > before * (1 - OVERFIT_TRAIN_DROP):
        return None
    evidence = {"eval_steps": _steps(ex), "eval_loss": ey, "train_loss_before": round(before, 6),
                "train_loss_after": round(after, 6), "steps": [int(ex[0]), int(ex[-1])]}
    return DoctorWarning(
        "overfitting", "warning",
        f"validation loss rose at each of the last {len(ey) - 1} evaluations ({_fmt(ey[0])} -> {_fmt(ey[-1])}, steps "
        f"{int(ex[0])}-{int(ex[-1])}) while training loss fell ({_fmt(before)} -> {_fmt(after)}): overfitting",
        evidence,
        ("train fewer epochs (or stop at the best checkpoint, step "
         f"{int(ex[0])})", "lower train.learning_rate", "add more (and more varied) training data",
         "raise lora.dropout or lower lora.r"))


def check_plateau(train: Curve, max_steps: int | None = None, min_y: float | None = None) -> DoctorWarning | None:
    """`min_y`: the curve's minimum when the caller already tracks it (saves a pass over the curve)."""
    xs, ys = train
    if len(ys) < PLATEAU_MIN_STEPS:
        return None
    head = list(ys[:PLATEAU_HEAD])
    tail = list(ys[-PLATEAU_HEAD:])
    start = sum(head) / len(head)
    now = sum(tail) / len(tail)
    if start <= 0:
        return None
    if abs(start - now) > PLATEAU_TOL * start:
        return None
    low = min_y if min_y is not None else min(ys)
    if low < start * (1 - PLATEAU_NEVER_BELOW):
        return None
    return DoctorWarning(
        "plateau", "warning",
        f"training loss has not moved since the start ({_fmt(start)} over steps {int(xs[0])}-{int(xs[PLATEAU_HEAD - 1])}, "
        f"{_fmt(now)} over steps {int(xs[-PLATEAU_HEAD])}-{int(xs[-1])})",
        {"start_steps": [int(xs[0]), int(xs[PLATEAU_HEAD - 1])], "start_loss": round(start, 6),
         "recent_steps": [int(xs[-PLATEAU_HEAD]), int(xs[-1])], "recent_loss": round(now, 6),
         "min_loss": low},
        ("raise train.learning_rate (LoRA 1e-4..3e-4, full 1e-5..5e-5)",
         "check the data: are the answers masked out (assistant_only_loss on text without turns)?",
         "check that the model has trainable parameters (LoRA target_modules)"))


def check_diverging(train: Curve) -> DoctorWarning | None:
    xs, ys = train
    if len(ys) < DIVERGE_HEAD + DIVERGE_LOGS:
        return None
    start = min(ys[:DIVERGE_HEAD])  # the lowest early loss: a climb inside the first logs still counts
    tail = list(ys[-DIVERGE_LOGS:])
    floor = max(DIVERGE_FACTOR * start, start + DIVERGE_MIN_RISE)
    if start <= 0 or min(tail) < floor:
        return None
    return DoctorWarning(
        "diverging", "error",
        f"training loss climbed to {_fmt(tail[-1])} at step {int(xs[-1])}, {tail[-1] / start:.0f}x its start "
        f"({_fmt(start)}, the lowest of steps {int(xs[0])}-{int(xs[DIVERGE_HEAD - 1])}): training has diverged",
        {"start_loss": round(start, 6), "start_steps": [int(xs[0]), int(xs[DIVERGE_HEAD - 1])],
         "recent_steps": [int(xs[-DIVERGE_LOGS]), int(xs[-1])], "recent_losses": tail},
        ("lower train.learning_rate by 10x", "add warmup (train.warmup_ratio 0.03-0.1)",
         "keep train.max_grad_norm at 1.0", "resume is pointless: start a new run with the lower rate"))


def check_dead(train: Curve, grad: Curve, vocab_size: int | None = None,
               start_loss: float | None = None) -> DoctorWarning | None:
    """`start_loss`: the lowest of the first logged losses (the curve's head when not given)."""
    if start_loss is None and len(train[1]):
        start_loss = min(train[1][:DIVERGE_HEAD])
    gx, gy = grad
    if len(gy) >= DEAD_LOGS and all(g == 0 for g in gy[-DEAD_LOGS:]):
        return DoctorWarning(
            "dead-model", "error",
            f"grad norm has been 0 for the last {DEAD_LOGS} logs (steps {int(gx[-DEAD_LOGS])}-{int(gx[-1])}): "
            "nothing is learning",
            {"steps": [int(gx[-DEAD_LOGS]), int(gx[-1])], "grad_norm": 0.0},
            ("check that the model has trainable parameters (LoRA target_modules)",
             "check the data: are all answers masked out (dataset.assistant_only_loss)?",
             "lower train.learning_rate: a too-high rate can kill the model (NaN/zero activations)"))
    xs, ys = train
    if vocab_size and vocab_size > 1 and len(ys) >= DEAD_LOGS and start_loss is not None:
        uniform = math.log(vocab_size)
        tail = list(ys[-DEAD_LOGS:])
        # only a model that knew better (a pretrained one starts well below ln(vocab)) can have died; a
        # randomly initialised one starts at ln(vocab) and is merely not learning yet (the plateau rule)
        if start_loss < (1 - DEAD_START_BELOW) * uniform and all(abs(v - uniform) <= DEAD_LOSS_TOL * uniform for v in tail):
            return DoctorWarning(
                "dead-model", "error",
                f"training loss has sat at {_fmt(tail[-1])} = ln({vocab_size}), a uniform guess over the vocabulary, "
                f"for the last {DEAD_LOGS} logs (steps {int(xs[-DEAD_LOGS])}-{int(xs[-1])}): the model is dead",
                {"steps": [int(xs[-DEAD_LOGS]), int(xs[-1])], "ln_vocab": round(uniform, 4), "losses": tail},
                ("lower train.learning_rate by 10x and start a new run (the weights are ruined)",
                 "keep train.max_grad_norm at 1.0", "add warmup (train.warmup_ratio 0.03-0.1)"))
    return None


def check_memorising(train: Curve) -> DoctorWarning | None:
    xs, ys = train
    if len(ys) < MEMORISE_LAST:
        return None
    tail = list(ys[-MEMORISE_LAST:])
    if max(tail) >= MEMORISE_LOSS:
        return None
    return DoctorWarning(
        "memorising", "warning",
        f"training loss is near 0 ({_fmt(tail[-1])} at step {int(xs[-1])}; the last {MEMORISE_LAST} below "
        f"{MEMORISE_LOSS}): the model is memorising the training set",
        {"steps": [int(xs[-MEMORISE_LAST]), int(xs[-1])], "losses": tail},
        ("train fewer epochs or stop now", "add more varied data (check for duplicates)",
         "watch the validation loss: it tells whether this generalises"))


def check_throughput(tps: Curve) -> DoctorWarning | None:
    xs, ys = tps
    ys = list(ys[-(TPS_BASELINE + TPS_RECENT + TPS_SKIP_FIRST):])
    xs = list(xs[-len(ys):]) if ys else []
    if len(ys) == len(tps[1]):  # the whole run fits: skip its first steps (warm-up, compilation)
        xs, ys = xs[TPS_SKIP_FIRST:], ys[TPS_SKIP_FIRST:]
    if len(ys) < TPS_MIN_BASELINE + TPS_RECENT:
        return None
    base_y = ys[:-TPS_RECENT][-TPS_BASELINE:]
    recent = ys[-TPS_RECENT:]
    base, now = median(base_y), median(recent)
    if base <= 0 or now >= TPS_RATIO * base:
        return None
    return DoctorWarning(
        "throughput-drop", "warning",
        f"throughput fell to {now:,.0f} tokens/s (steps {int(xs[-TPS_RECENT])}-{int(xs[-1])}) from "
        f"{base:,.0f} before ({now / base:.0%})",
        {"recent_steps": [int(xs[-TPS_RECENT]), int(xs[-1])], "recent_tokens_per_s": now,
         "baseline_tokens_per_s": base},
        ("another process may be using the GPU (check nvidia-smi)",
         "the machine may be swapping (host RAM) or the GPU throttling (temperature)",
         "a slow disk or dataloader: checkpoints or evaluation too often?"))


# ---------------------------------------------------------------------------------------- entry


def check_grpo_signal(steps: Sequence[float], zero_std: Sequence[float],
                      reward_mean: Sequence[float]) -> DoctorWarning | None:
    """GRPO learns from reward differences inside a group; with none anywhere the loss is 0 and nothing moves."""
    if len(zero_std) < GRPO_LOGS or min(zero_std[-GRPO_LOGS:]) < GRPO_ZERO_STD:
        return None
    first, last = int(steps[-GRPO_LOGS]), int(steps[-1])
    rewards = list(reward_mean[-GRPO_LOGS:])
    all_zero = len(rewards) == GRPO_LOGS and all(r == 0 for r in rewards)
    what = "the reward was 0 for every completion" if all_zero else "every completion of a prompt got the same reward"
    return DoctorWarning(
        "grpo-no-signal", "warning",
        f"{what} in each of the last {GRPO_LOGS} logs (steps {first}-{last}): with no spread inside a group the "
        "advantages and the loss are 0 and nothing is learnt",
        {"steps": [first, last], "zero_std_ratio": list(zero_std[-GRPO_LOGS:]), "reward_mean": rewards},
        ("check the reward on a few real completions (the run's `sample` events): does it ever give more than 0?",
         "check the format the reward expects against what the model writes (add a `format` reward, or SFT "
         "on a few formatted answers first)",
         "give partial credit (several rewards with reward_weights) instead of one all-or-nothing reward",
         "raise grpo.num_generations or grpo.temperature for more varied completions; pick easier prompts"))


def check_grpo_clipped(steps: Sequence[float], clipped: Sequence[float]) -> DoctorWarning | None:
    if len(clipped) < GRPO_LOGS or min(clipped[-GRPO_LOGS:]) < GRPO_CLIPPED:
        return None
    first, last = int(steps[-GRPO_LOGS]), int(steps[-1])
    return DoctorWarning(
        "grpo-clipped", "warning",
        f"completions were cut at grpo.max_completion_length in each of the last {GRPO_LOGS} logs (steps "
        f"{first}-{last}, {clipped[-1]:.0%} at the last): answers never finish, so rewards that read the end "
        "(the answer, the format) see none",
        {"steps": [first, last], "clipped_ratio": list(clipped[-GRPO_LOGS:])},
        ("raise grpo.max_completion_length", "add the length_penalty reward (shorter reasoning)",
         "check that the chat template ends the assistant turn with the EOS the model generates",
         "ask for a short answer in the prompt or the system message"))


def diagnose_grpo(steps: Sequence[float], zero_std: Sequence[float], reward_mean: Sequence[float],
                  clipped: Sequence[float], clipped_steps: Sequence[float] | None = None) -> list[DoctorWarning]:
    """The GRPO rules on their curves (aligned with `steps`; `clipped_steps` when clipped has its own)."""
    out = []
    for w in (check_grpo_signal(steps, zero_std, reward_mean),
              check_grpo_clipped(clipped_steps if clipped_steps is not None else steps, clipped)):
        if w is not None:
            out.append(w)
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def check_preference_stuck(steps: Sequence[float], accuracy: Sequence[float], margin: Sequence[float],
                           n_logs: int | None = None) -> DoctorWarning | None:
    """DPO/ORPO/SimPO: the pairs are not being separated. `accuracy`/`margin` aligned with `steps`; the
    curves may be the head and the recent window only, with `n_logs` the number of logs so far."""
    n = len(steps) if n_logs is None else n_logs
    if n < PREF_WARMUP + PREF_WINDOW or len(accuracy) < PREF_WINDOW or len(margin) < PREF_WINDOW:
        return None
    acc = _mean(accuracy[-PREF_WINDOW:])
    m_now, m_head = _mean(margin[-PREF_WINDOW:]), _mean(margin[:PREF_HEAD])
    first, last = int(steps[-PREF_WINDOW]), int(steps[-1])
    evidence = {"steps": [first, last], "accuracy_mean": round(acc, 4), "margin_mean": round(m_now, 6),
                "margin_first": round(m_head, 6)}
    if abs(acc - 0.5) <= PREF_CHANCE:
        what = (f"reward accuracy has stayed near chance ({acc:.2f} on average over steps {first}-{last}): the "
                "model prefers the chosen answer about as often as the rejected one")
    elif m_now - m_head < PREF_MARGIN_RISE and acc < PREF_SEPARATED:
        what = (f"the reward margin has not grown ({_fmt(m_head)} at the start, {_fmt(m_now)} over steps "
                f"{first}-{last}, accuracy {acc:.2f}): the chosen and rejected answers are not being pulled apart")
    else:
        return None
    return DoctorWarning(
        "preference-stuck", "warning", what, evidence,
        ("raise train.learning_rate (LoRA 5e-6..5e-5 is usual for DPO; more on a small model)",
         "check the pairs: are chosen and rejected really different, and is chosen the better one? "
         "(ftwizard inspect DATA --kind dpo)",
         "lower dpo.beta (0.1 -> 0.05) so the model may move further from the reference",
         "start from a model that was fine-tuned with SFT on this task first"))


def check_chosen_unlearned(chosen: Curve, rejected: Curve, n_logs: int | None = None) -> DoctorWarning | None:
    """DPO/ORPO/SimPO: the chosen reward falls along with the rejected one (the chosen answers are being
    unlearned while the margin grows). Curves may be the head and the recent window only (`n_logs`)."""
    (cx, cy), (_, ry) = chosen, rejected
    n = len(cy) if n_logs is None else n_logs
    if n < PREF_WARMUP + PREF_WINDOW or len(cy) < PREF_WINDOW or len(ry) < PREF_WINDOW:
        return None
    c_drop = _mean(cy[:PREF_HEAD]) - _mean(cy[-PREF_WINDOW:])
    r_drop = _mean(ry[:PREF_HEAD]) - _mean(ry[-PREF_WINDOW:])
    if c_drop < CHOSEN_DROP or r_drop <= 0 or c_drop < CHOSEN_SHARE * r_drop:
        return None
    first, last = int(cx[-PREF_WINDOW]), int(cx[-1])
    return DoctorWarning(
        "chosen-unlearned", "warning",
        f"the chosen answers' reward fell by {_fmt(c_drop)} along with the rejected ones' ({_fmt(r_drop)}) by steps "
        f"{first}-{last}: the margin grows by making both answers less likely, so the chosen answers are being "
        "unlearned", {"steps": [first, last], "chosen_drop": round(c_drop, 6), "rejected_drop": round(r_drop, 6)},
        ("add an SFT term on the chosen answers: dpo.loss_type: [sigmoid, sft] (or simpo.cpo_alpha > 0, or "
         "training: orpo, whose loss has one)",
         "raise dpo.beta (keeps the model nearer the reference)",
         "lower train.learning_rate or train fewer epochs",
         "check that chosen and rejected are not near-identical (the shared tokens are pushed down with both)"))


def check_kto_one_label(steps: Sequence[float], desirable_steps: Sequence[float],
                        undesirable_steps: Sequence[float]) -> DoctorWarning | None:
    """KTO: the per-label rewards of one label absent from each of the last KTO_LOGS logs (`steps`: the
    steps of every KTO log; the others: the steps whose log had that label's rewards)."""
    if len(steps) < KTO_LOGS:
        return None
    window = {int(x) for x in steps[-KTO_LOGS:]}
    first, last = int(steps[-KTO_LOGS]), int(steps[-1])
    for label, seen in (("undesirable", undesirable_steps), ("desirable", desirable_steps)):
        if not window & {int(x) for x in seen[-KTO_LOGS:]}:
            return DoctorWarning(
                "kto-one-label", "warning",
                f"no batch held {'an' if label[0] in 'aeiou' else 'a'} {label} row in the last {KTO_LOGS} logs (steps {first}-{last}): KTO is learning "
                f"from one label only, with nothing to contrast it with",
                {"steps": [first, last], "missing_label": label},
                ("check the label balance: ftwizard inspect DATA --kind kto (a rare label seldom lands in a "
                 "batch; kto.desirable_weight / undesirable_weight reweigh it, more rows of it fix it)",
                 "raise train.batch_size (or gradient_accumulation_steps) so each step sees both labels"))
    return None


def diagnose_preference(curves: dict[str, Curve], kto_steps: Sequence[float] = ()) -> list[DoctorWarning]:
    """The preference rules on curves named as `train` events name them (reward_accuracy, reward_margin,
    reward_chosen, reward_rejected; KTO: reward_desirable, reward_undesirable and `kto_steps`, the steps
    of every KTO log)."""
    out = []
    acc, margin = curves.get("reward_accuracy", ((), ())), curves.get("reward_margin", ((), ()))
    if len(kto_steps):
        w = check_kto_one_label(kto_steps, curves.get("reward_desirable", ((), ()))[0],
                                curves.get("reward_undesirable", ((), ()))[0])
        return [w] if w is not None else []
    if len(acc[1]) and len(acc[1]) == len(margin[1]):
        w = check_preference_stuck(acc[0], acc[1], margin[1])
        if w is not None:
            out.append(w)
    chosen, rejected = curves.get("reward_chosen", ((), ())), curves.get("reward_rejected", ((), ()))
    if len(chosen[1]) and len(chosen[1]) == len(rejected[1]):
        w = check_chosen_unlearned(chosen, rejected)
        if w is not None:
            out.append(w)
    return out


def diagnose_series(*, train: Curve = ((), ()), evals: Curve = ((), ()), grad: Curve = ((), ()),
                    tps: Curve = ((), ()), nonfinite: Sequence[tuple[int, str, float]] = (),
                    max_steps: int | None = None, train_min: float | None = None,
                    vocab_size: int | None = None) -> list[DoctorWarning]:
    """All warnings that hold now, most serious first. `train_min`: the training loss's minimum, if
    the caller tracks it (the monitor does), so no rule walks the whole curve. `vocab_size` lets the
    dead-model rule recognise a loss stuck at ln(vocab)."""
    out = []
    for w in (check_nonfinite(nonfinite), check_diverging(train), check_dead(train, grad, vocab_size),
              check_grad(grad), check_overfitting(train, evals),
              check_memorising(train), check_plateau(train, max_steps, train_min), check_throughput(tps)):
        if w is not None:
            out.append(w)
    return out


def diagnose_events(events: Iterable[dict], vocab_size: int | None = None) -> list[DoctorWarning]:
    """Warnings from a run's events (a resumed run's repeated steps replace the earlier ones)."""
    names = ("loss", "eval_loss", "grad_norm", "tokens_per_s", "zero_std_ratio", "reward_mean", "clipped_ratio",
             *PREFERENCE_CURVES)
    curves: dict[str, tuple[list, list]] = {k: ([], []) for k in names}
    nonfinite: list[tuple[int, str, float]] = []
    max_steps = None
    for ev in events:
        kind, step = ev.get("type"), ev.get("step")
        if kind not in ("train", "eval") or not isinstance(step, int):
            continue
        if kind == "train":
            max_steps = ev.get("max_steps") or max_steps
        for key in (names[:1] + names[2:] if kind == "train" else ("eval_loss",)):
            v = ev.get(key)
            if v is None:
                continue
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(v):
                if key in names[:4]:  # the loss, validation loss, grad norm (tokens/s)
                    nonfinite.append((step, key, v))
                continue
            xs, ys = curves[key]
            while xs and xs[-1] >= step:
                xs.pop(), ys.pop()
            xs.append(step)
            ys.append(v)
    grpo = is_grpo(curves)
    # GRPO: a loss and grad norm of 0 are the no-signal case, said by its own rule with its own fixes
    out = diagnose_series(train=((), ()) if grpo else curves["loss"], evals=curves["eval_loss"],
                          grad=((), ()) if grpo else curves["grad_norm"], tps=curves["tokens_per_s"],
                          nonfinite=nonfinite, max_steps=max_steps, vocab_size=vocab_size)
    return out + diagnose_kind(curves)


# the `train` event names the preference rules read (core/events.py KIND_METRICS); KTO's logs carry `kl`
PREFERENCE_CURVES = ("reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected", "reward_desirable",
                     "reward_undesirable", "kl")
GRPO_CURVES = ("zero_std_ratio", "reward_mean", "clipped_ratio")
KIND_CURVES = GRPO_CURVES + PREFERENCE_CURVES  # what `diagnose_kind` reads


def is_grpo(curves: dict[str, Curve]) -> bool:
    """A GRPO run's curves: its loss and grad norm near 0 are normal, not a dead model."""
    return bool(len(curves.get("zero_std_ratio", ((), ()))[1]) or len(curves.get("clipped_ratio", ((), ()))[1]))


def diagnose_kind(curves: dict[str, Curve]) -> list[DoctorWarning]:
    """The training kind's own rules (GRPO, DPO/ORPO/SimPO, KTO) on curves named as `train` events name
    them (KIND_CURVES; absent ones are empty). One home for the events' doctor and the monitor's."""
    empty: Curve = ((), ())
    out = []
    if is_grpo(curves):
        (zx, zy), (_, ry) = curves.get("zero_std_ratio", empty), curves.get("reward_mean", empty)
        cx, cy = curves.get("clipped_ratio", empty)
        out += diagnose_grpo(zx, zy, ry if len(ry) == len(zy) else [], cy, cx)
    out += diagnose_preference({k: curves.get(k, empty) for k in PREFERENCE_CURVES},
                               kto_steps=curves.get("kl", empty)[0])
    return out


EARLY_STOP_CODES = ("nan-loss", "overfitting")
END_RUN_CODES = ("diverging", "dead-model")  # the training process ends the run as failed on these


def should_stop(warnings: Iterable[DoctorWarning], codes: Sequence[str] = EARLY_STOP_CODES) -> DoctorWarning | None:
    """For optional early stopping: the first warning whose code is in `codes`, else None."""
    for w in warnings:
        if w.code in codes:
            return w
    return None


def _index_at_or_after(xs: Sequence[float], x: float) -> int:
    from bisect import bisect_left

    return bisect_left(xs, x)


class Diverged(Exception):
    """Raised by the training process after the doctor ended the run (diverging, dead model)."""


def training_callback(emit, vocab_size: int | None = None, metrics: dict | None = None):
    """A TrainerCallback that runs the doctor's ending rules on the logged curves (bounded windows) and
    stops training on `END_RUN_CODES`; `.check()` after training raises `Diverged` with the reason.
    The GRPO rules, and with `metrics` (a preference kind's TRL log name -> `train` event name, as
    recipes/preference.py maps them) the preference and KTO rules, run on bounded windows too.
    Warnings go to `emit("warning", ...)` once per code."""
    from collections import deque

    from transformers import TrainerCallback

    keep = max(DIVERGE_LOGS, DEAD_LOGS)

    class DoctorCallback(TrainerCallback):
        ended: DoctorWarning | None = None

        def __init__(self):
            self.head: list[tuple[int, float]] = []
            self.recent: deque = deque(maxlen=keep)
            self.grads: deque = deque(maxlen=keep)

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs or self.ended is not None:
                return
            loss, step = logs["loss"], state.global_step
            if not _finite_number(loss):
                return  # the NaN rule lives in the trainer (three NaN logs end it)
            if "frac_reward_zero_std" in logs or "completions/clipped_ratio" in logs:
                self.on_grpo_log(step, logs, state)  # a GRPO loss near 0 is normal: its own rules
                return
            if metrics:
                ours = {metrics[k]: v for k, v in logs.items() if k in metrics and _finite_number(v)}
                if ours:
                    self.on_preference_log(step, ours, state)
            if len(self.head) < DIVERGE_HEAD:
                self.head.append((step, float(loss)))
            self.recent.append((step, float(loss)))
            if logs.get("grad_norm") is not None and _finite_number(logs["grad_norm"]):
                self.grads.append((step, float(logs["grad_norm"])))
            pts = self.head + [p for p in self.recent if p[0] > self.head[-1][0]]
            train = ([p[0] for p in pts], [p[1] for p in pts])
            grad = ([p[0] for p in self.grads], [p[1] for p in self.grads])
            w = check_diverging(train) or check_dead(([p[0] for p in self.recent], [p[1] for p in self.recent]),
                                                     grad, vocab_size, min(p[1] for p in self.head))
            if w is not None:
                self.ended = w
                control.should_training_stop = True
                if state.is_world_process_zero:
                    emit("warning", code=w.code, message=w.message, evidence=w.evidence)

        grpo: deque | None = None
        said: set = set()

        def on_grpo_log(self, step, logs, state):
            if self.grpo is None:
                self.grpo, self.said = deque(maxlen=GRPO_LOGS), set()
            self.grpo.append((step, float(logs.get("frac_reward_zero_std", 0.0) or 0.0),
                              float(logs.get("reward", math.nan) if logs.get("reward") is not None else math.nan),
                              float(logs.get("completions/clipped_ratio", 0.0) or 0.0)))
            pts = list(self.grpo)
            for w in diagnose_grpo([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts],
                                   [p[3] for p in pts]):
                if w.code not in self.said and state.is_world_process_zero:
                    self.said.add(w.code)
                    emit("warning", code=w.code, message=w.message, evidence=w.evidence, advice=list(w.advice))

        pref_head: list | None = None

        def on_preference_log(self, step, ours: dict, state):
            """The preference rules on the head and the recent window of the kind's metrics."""
            if self.pref_head is None:
                self.pref_head, self.pref_recent, self.pref_n = [], deque(maxlen=PREF_WINDOW), 0
                self.kto_recent = deque(maxlen=KTO_LOGS)
                self.said = set()
            self.pref_n += 1
            if "kl" in ours:  # KTO: which labels this log's batches held
                self.kto_recent.append((step, "reward_desirable" in ours, "reward_undesirable" in ours))
                pts = list(self.kto_recent)
                found = [check_kto_one_label([p[0] for p in pts], [p[0] for p in pts if p[1]],
                                             [p[0] for p in pts if p[2]])]
            else:
                point = (step, *(float(ours.get(k, math.nan)) for k in
                                 ("reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected")))
                if len(self.pref_head) < PREF_HEAD:
                    self.pref_head.append(point)
                self.pref_recent.append(point)
                pts = self.pref_head + [p for p in self.pref_recent if p[0] > self.pref_head[-1][0]]
                col = [[p[i] for p in pts] for i in range(5)]
                found = [check_preference_stuck(col[0], col[1], col[2], self.pref_n) if all(
                             math.isfinite(v) for v in col[1] + col[2]) else None,
                         check_chosen_unlearned((col[0], col[3]), (col[0], col[4]), self.pref_n) if all(
                             math.isfinite(v) for v in col[3] + col[4]) else None]
            for w in found:
                if w is not None and w.code not in self.said and state.is_world_process_zero:
                    self.said.add(w.code)
                    emit("warning", code=w.code, message=w.message, evidence=w.evidence, advice=list(w.advice))

        def check(self) -> None:
            if self.ended is not None:
                raise Diverged(f"{self.ended.message}; the run was ended")

    return DoctorCallback()


def _finite_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
