"""The data layer: `DataSpec` (spec), `Documents` (documents), one decoder (decode), one reader per
source behind `open_split` (readers), a classifier's splits and labels (classification,
labels), and each host's rows of a global batch (hosts)."""
