"""Entry point of the bundled desktop app (PyInstaller): ``MIDI-Zero [options]``.

``freeze_support`` comes first: the score parser runs in spawned worker processes, which in a
frozen build re-run this executable; they must not import Qt.
"""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    if len(sys.argv) > 1 and sys.argv[1] == "--cli":  # the `midizero` command, same bundle
        from midizero_app.cli import main as cli_main

        sys.exit(cli_main(sys.argv[2:]))
    from midizero_app.gui.app import main

    sys.exit(main())
