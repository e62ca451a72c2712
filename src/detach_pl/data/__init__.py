"""Data: dataset readers, the synthetic kitchen, window caches and Lightning DataModules.

One word per concept. A **run** is one continuous recording (a sensor table and its video): the
unit the cache stores (`RunRecording`, `WindowCache.run_names`) and the splits name
(`train_runs`, …). HWU-USP's release calls its runs *trials*; its reader keeps that word
(`hwu_usp.Trial`, `trials_per_batch`) because the release's file names and the authors' folds
are written in it, and every trial becomes one run in the cache. **sequence** is not a third
concept but the run seen from a batch: the batch key `sequence` holds each window's run index,
and `probe_unit: sequence` classifies whole runs; both names are part of the batch contract and of
saved preprocessing contracts, so they stay.
"""
