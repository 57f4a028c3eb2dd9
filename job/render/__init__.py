"""Pictures of a layout: datashader rasters, labelled zooms, the interactive page."""
