"""Datasets: reading any source, detecting its format, checking it, and tokenizing it exactly as training
will (the preview *is* the training path). No ML library is imported at module import time.

For the wizard's Dataset screen (all pure functions; run the slow ones in a worker thread):

    from ftwizard.core.data.preview import quick_preview, render_row
    from ftwizard.core.data.stats import scan_dataset, compute_stats
    from ftwizard.core.data.stats import check_dataset
    from ftwizard.core.data.problems import Problem
    from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer

    prev = quick_preview(path, n=50, columns=None, format="auto")      # ms; UserError if unreadable
    prev.format, prev.evidence, prev.columns, prev.rows, prev.lines, prev.problems, prev.total_rows
    tok = load_tokenizer(model_path)                                     # seconds: worker
    template, why = setup_tokenizer(tok, cfg.model.chat_template, cfg.dataset.assistant_only_loss)
    r = render_row(prev.rows[i], tok, template, max_length, assistant_only, prev.detected)
    r.segments  -> [(text, trained: bool)], r.n_tokens, r.n_trained, r.truncated, r.cut_text, r.eos_token
    report = scan_dataset(path, tok, template, max_length, assistant_only, progress=lambda f: ...,
                          cancel=threading.Event(), partial=lambda stats: ...)  # worker; stats + problems
    report.stats.min/median/p95/max/histogram/roles/tokens_per_epoch/steps_per_epoch; report.problems

Modules, lowest layer first; a module imports only from the layers below it (no cycle possible):

    problems            the `Problem` type (code, fix, severity) and the list of codes
    read | split        streaming rows with file and line, dataset suffixes (`EXTENSIONS`); seeded split
    formats             one `FormatSpec` per format (detect with evidence, columns, canonical/TRL rows,
                        row checks, what SFT does with it), `detect_source`
    checks              the rules: one row's problems, too few rows, generation markers, mask fallback
    tokenize            `encode_row` (input_ids + labels with -100 on masked tokens), cached
                        `tokenize_dataset`, `load_tokenizer`, `setup_tokenizer`
    stats | preview     `scan_dataset` / `compute_stats` / `check_dataset` (one streaming pass: statistics
                        and located problems); `quick_preview`, `render_row`
    prepare             `prepare_training_data`, the training process's data step
    kinds               `kind_report` / `grpo_report`: the rows as a training kind's TRL trainer sees them,
                        with that kind's problems (chosen == rejected, prompts over budget, KTO balance, ...)
"""
