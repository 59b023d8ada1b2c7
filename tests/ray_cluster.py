"""Test access to a local Ray head (the same code `wan22 up` runs)."""

from services.stack.ray_head import RayHead as RayCluster

__all__ = ["RayCluster"]
