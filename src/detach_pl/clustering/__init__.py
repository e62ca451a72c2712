"""Online clustering of sensor features (stage 1 of DETACH): k-means and the ODC memory bank."""

from detach_pl.clustering.odc import OdcMemory, kmeans

__all__ = ["OdcMemory", "kmeans"]
