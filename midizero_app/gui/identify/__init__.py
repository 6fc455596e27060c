"""The Identify tab's parts: one module per input (MIDI keyboard, microphone, on-screen and
computer keyboard, a dropped file) and one for sound (hear what I play, play a match).
:mod:`midizero_app.gui.identify_tab` composes them."""
