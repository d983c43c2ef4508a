"""The data layer: `DataSpec` (spec), `Documents` (documents), one decoder (decode), one reader per
source behind `open_split` (readers), and a classifier's splits and labels (classification,
labels)."""
