"""`ems agent`: the rack agent of a GPU node (NVML power, caps and smoothing over the row protocol)."""
