"""``python -m midizero_app`` starts the desktop app."""
from midizero_app.gui.app import main

if __name__ == "__main__":
    raise SystemExit(main())
