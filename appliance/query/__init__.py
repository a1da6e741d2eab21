"""The stats vocabulary (aggregate, timeseries, breakdown, …) over one :class:`Query`,
answered from counters and sketches, materialised segments, or scans of column blocks."""
