"""Data: dataset readers, the synthetic kitchen, window caches and Lightning DataModules."""
