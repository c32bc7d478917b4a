"""The Textual console minus its widgets: the App (``app``), what it drives
(``target``), the snapshot feed thread (``feed``), the key table (``keys``),
the command palette provider (``palette``), which queues are shown and in what
order (``selection``), cell formatting (``format``) and the styles
(``app.tcss``). The widgets and screens live in svqtui.widgets."""
