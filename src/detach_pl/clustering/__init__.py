"""Online clustering of sensor features (stage 1 of DETACH): k-means and the ODC memory bank.

``detach_pl.clustering.kmeans`` names the function here; its module is imported as
``from detach_pl.clustering.kmeans import ...``.
"""

from detach_pl.clustering.kmeans import KMeansMetric, kmeans
from detach_pl.clustering.odc import DissolveMode, DistanceMetric, OdcMemory

__all__ = ["DissolveMode", "DistanceMetric", "KMeansMetric", "OdcMemory", "kmeans"]
