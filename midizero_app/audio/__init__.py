"""Audio input: decoding, transcription, microphone, SoundFont playback (DESIGN §2)."""
