"""The console's widgets, one per module: device tree, queue table, queue
detail, status bar, log pane, help, quit question, filter line, the command
palette provider, plus the pure helpers they share (format, selection, keys)
and the snapshot feed thread."""
