"""The pipeline: stage notebooks executed by papermill, their cache and kernels, run reports, reproduction and W&B sync."""
