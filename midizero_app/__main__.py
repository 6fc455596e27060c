"""``python -m midizero_app`` starts the desktop app."""

if __name__ == "__main__":
    # Imported here, not at the top: spawned parser workers re-import this module and must
    # not load Qt.
    from midizero_app.gui.app import main

    raise SystemExit(main())
