"""The console's widgets and screens, one per module: device tree, device
header, queue table, queue detail, status bar, log pane, help screen, quit
question and filter line. What they show and how comes from svqtui.console
(format, selection, keys); the app that composes them is svqtui.console.app."""
