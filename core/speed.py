"""The Trainer's speed patches: per-step costs of transformers' Trainer that buy nothing for our runs.

Each one keeps results identical (tests/test_speed_defaults.py) and was measured when it was added:
    FtwizardTrainer(kind, t)   no TRL extras per step unless train.extra_metrics; FLOPs per token
                               counted once; gradients clipped over the trainable tensors only
    skip_module_walks          model.train() / zero_grad() without walking every module each step
    LongestFirstSampler        the longest batch first (train.longest_first): an OOM shows at step 1
                               (lengths from the Arrow offsets: no row read; equal rows: plain shuffle)
    PackedRowsCollator         train.packing on SDPA/eager: packed rows kept apart by position_ids
    TokenCounter               tokens/s of the batches trained on, counted on the CPU: no GPU sync per step
Nothing here imports torch or transformers at module level.
"""

from __future__ import annotations

# torch's OpenMP threads spin-wait between parallel regions by default (libgomp: active for a while, then
# asleep). With other processes on the same cores a spinning thread holds the core its partner needs, so
# every barrier waits for a time slice: on 2 shared cores a GRPO `generate` of 8 x 16 tokens on
# SmolLM2-135M took ~95 s with 2 threads, ~12 s with passive waiting. Passive waiting costs on a quiet
# machine, most where ops are smallest (2026-12-01, tests/benchmarks/cpu_threads.py and README "Training
# speed": SmolLM2 forward+backward even, generate ~20% slower; the tiny test model's steps ~35% slower),
# far less than spinning costs on a busy one (2-50x slower), so the training process waits passively.
# core/recipes/common.py applies it before torch loads; a value already in the environment wins.
TRAINER_OMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def speed_trainer(base: type, t) -> type:
    """`base` (a TRL/transformers Trainer class) with the per-step patches, for the train section `t`."""
    from transformers import Trainer

    class FtwizardTrainer(base):
        """The recipe's Trainer without per-step extras unless asked (train.extra_metrics).

        TRL computes entropy and token accuracy for every batch, with three host syncs; the monitor
        shows neither, so by default the loss is computed the way transformers' Trainer does it.
        """

        def training_step(self, model, inputs, *a, **kw):
            n = inputs.pop(TOKENS_KEY, 0) if isinstance(inputs, dict) else 0
            if isinstance(self.data_collator, TokenCounter):
                self.data_collator.tokens += n
            return super().training_step(model, inputs, *a, **kw)

        def prediction_step(self, model, inputs, *a, **kw):
            if isinstance(inputs, dict):
                inputs.pop(TOKENS_KEY, None)  # evaluation is not training
            return super().prediction_step(model, inputs, *a, **kw)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if t.extra_metrics:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        # Two per-step costs of the Trainer that buy nothing here: FLOPs are counted by walking every
        # parameter each step (the count per token never changes: computed once), and gradients are
        # clipped over model.parameters(), frozen ones included (LoRA: a few trainable tensors of
        # hundreds). Same results; with FSDP/DeepSpeed the Trainer's own path is kept.
        _flops_per_token = None
        _trainable = None

        def floating_point_ops(self, inputs):
            if self._flops_per_token is None:
                self._flops_per_token = super().floating_point_ops({"input_ids": _ONE_TOKEN})
            ids = inputs.get("input_ids")
            return self._flops_per_token * (ids.numel() if ids is not None else 0)

        def _plain(self) -> bool:
            """One process or plain DDP: parameters are ordinary tensors, no FSDP/DeepSpeed sharding."""
            from accelerate.utils import DistributedType

            return self.accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU,
                                                         DistributedType.MULTI_CPU)

        def trainable(self, model) -> list:
            if self._trainable is None:
                self._trainable = [p for p in model.parameters() if p.requires_grad]
            return self._trainable

        def _clip_grad_norm(self, model):
            if not self._plain():
                return super()._clip_grad_norm(model)
            return self.accelerator.clip_grad_norm_(self.trainable(model), self.args.max_grad_norm)

        def train(self, *a, **kw):
            if self._plain():
                skip_module_walks(self.model, self.trainable(self.model))
            return super().train(*a, **kw)

        def _get_train_sampler(self, *a, **kw):
            if not t.longest_first:
                return super()._get_train_sampler(*a, **kw)
            lengths = row_lengths(self.train_dataset)
            if lengths is None or (len(lengths) and lengths.min() == lengths.max()):
                # equal rows (CPT blocks are all max_length): any batch is the longest, a plain seeded
                # shuffle is longest-first already
                return super()._get_train_sampler(*a, **kw)
            return LongestFirstSampler(lengths, t.batch_size, t.seed)

    return FtwizardTrainer


def row_lengths(ds, column: str = "input_ids"):
    """Each row's token count as a numpy array, from the Arrow list offsets of `column` alone: no row is
    read or converted (iterating `ds["input_ids"]` would page in every token of a memory-mapped corpus,
    ~3.5 GB for 1 GB of CPT text). Honours a `select` index mapping. None when `ds` is not an Arrow-backed
    datasets.Dataset with that column (then the Trainer's own sampler is used)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    data = getattr(ds, "data", None)
    if data is None or column not in getattr(data, "column_names", ()):
        return None
    col = data.table.column(column) if hasattr(data, "table") else data.column(column)
    if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
        return None
    lengths = pc.list_value_length(col).fill_null(0).to_numpy()
    indices = getattr(ds, "_indices", None)
    if indices is not None:
        lengths = lengths[indices.column(0).to_numpy()]
    return np.asarray(lengths, dtype=np.int64)


def skip_module_walks(model, trainable: list) -> None:
    """Two walks over every module the Trainer makes at each step, answered from what is known.

    `model.train()` before each step recurses through every submodule (hundreds with LoRA wrappers)
    to set a flag already set: only an evaluation clears it, through `model.eval()` on this same root,
    so while the root is in training mode so is every submodule. `model.zero_grad()` after each step
    walks every parameter, frozen ones included; only the trainable ones ever hold a gradient. Per
    instance, same results; eval() and train(False) keep the full walk. (A submodule put in eval
    mode by hand while the root trains would stay so; nothing in the Trainer, TRL or peft does that.)
    The first train() always walks: a fresh PeftModel root is in training mode while the model under
    it is still in the eval mode from_pretrained left it in (skipping that walk trained the whole run
    up to the first evaluation in eval mode: no dropout, no activation checkpointing).
    """
    full_train = type(model).train
    walked = []

    def train(mode: bool = True):
        if mode and model.training and walked:
            return model
        if mode:
            walked.append(True)
        return full_train(model, mode)

    def zero_grad(set_to_none: bool = True) -> None:
        for p in trainable:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:  # as torch.nn.Module.zero_grad does it
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    model.train = train
    model.zero_grad = zero_grad


class _OneToken:
    """Stands for a 1-token input when asking the Trainer for FLOPs per token."""

    def numel(self) -> int:
        return 1


_ONE_TOKEN = _OneToken()


class LongestFirstSampler:
    """A seeded random order with the longest `batch_size` rows first, so an out-of-memory error shows
    at step 1 instead of hours in (unsloth #1624). Deterministic per (seed, epoch), so resume skips the
    same batches the first run saw."""

    def __init__(self, lengths, batch_size: int, seed: int):
        self.lengths = lengths  # a sequence or numpy array of token counts
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        if self.epoch == 0:
            import numpy as np

            # stable: ties keep row order, as sorted() did
            longest = np.argsort(-np.asarray(self.lengths), kind="stable")[: self.batch_size].tolist()
            first = set(longest)
            order = longest + [i for i in order if i not in first]
        return iter(order)


class PackedRowsCollator:
    """Batches of packed rows (train.packing without flash attention): each row holds several sequences,
    position_ids restart at every sequence and no attention_mask is passed, so transformers' masking
    (create_causal_mask -> find_packed_sequence_indices) builds a causal mask per sequence: rows packed
    together never attend to each other (tests/test_packing.py: same per-row loss as unpacked). The label
    of each sequence's first token is dropped, as TRL's padding-free collator does, so no sequence is
    trained to predict the start of the next one. Rows stay rows (not flattened into one): SDPA's mask
    and attention cost stay batch x max_length^2, not (batch x max_length)^2 as one flat row would cost."""

    def __init__(self, pad_token_id: int):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.inner = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def __call__(self, examples):
        out = self.inner(examples)
        del out["attention_mask"]  # with a 2D mask transformers ignores the per-sequence position_ids
        out["labels"][out["position_ids"] == 0] = -100
        return out


TOKENS_KEY = "_ftwizard_tokens"  # a batch's token count, from the collator to the training step


class TokenCounter:
    """Counts the non-padding tokens of the batches trained on, on the CPU: no GPU sync per step. The
    collator attaches each batch's count to it and the training step takes it off (speed_trainer), so
    `tokens` is what was trained: counted at collation it led by the batch accelerate builds ahead and
    took in the evaluation batches, which go through the same collator."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0

    def __call__(self, examples):
        out = self.collator(examples)
        out[TOKENS_KEY] = sum(len(e["input_ids"]) for e in examples)
        return out
