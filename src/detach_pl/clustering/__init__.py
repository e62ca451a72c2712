"""Online clustering of sensor features (stage 1 of DETACH): k-means and the ODC memory bank."""

from detach_pl.clustering.odc import DissolveMode, DistanceMetric, KMeansMetric, OdcMemory, kmeans

__all__ = ["DissolveMode", "DistanceMetric", "KMeansMetric", "OdcMemory", "kmeans"]
