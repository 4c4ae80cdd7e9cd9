"""The window: one package per tab (characters, dataset, training, generate, video), settings,
dialogs and shared widgets. Widgets talk to services only; app.py wires them."""
