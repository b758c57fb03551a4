"""Datasets: reading files and hub ids, detecting their format, converting them to one shape, and
tokenizing them exactly as training will (the preview *is* the training path).

- `formats`: detection (with evidence) and conversion to canonical rows
  (`{"messages": [...]}`, `{"prompt": .., "completion": ..}` or `{"text": ..}`)
- `load`: reading local files / directories / hub ids into `datasets.Dataset`
- `tokenize`: `encode_row` (input_ids + labels with -100 on masked tokens) and the cached tokenized
  dataset the trainer consumes
"""
