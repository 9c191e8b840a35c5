"""Runtime: torchrun ranks and launching, fair core shares, stopping on request, atomic writes, full disks, progress bars and fan-out to a Dask cluster."""
