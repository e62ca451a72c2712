"""Small generated releases for tests and benchmarks, like `torch.testing`: not for training.

The real datasets cannot be downloaded where the tests run, so the readers are tested (and the
loaders benchmarked) on folders written here in the releases' exact layouts, each returned with
its ground truth:

- `detach_pl.testing.opportunity`: an Opportunity++ release (`write_standin_release`), with the
  OPPORTUNITY description files shipped in `fixtures/opportunity/` (the release's own files);
- `detach_pl.testing.hwu_usp`: an HWU-USP release in the authors' or a flat tree (`write_standin`);
- `detach_pl.testing.video`: the PyAV video writer both use.

Nothing in `detach_pl` outside this package imports it.
"""
