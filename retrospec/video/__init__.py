"""Replay clips: render a recorded session to a video file with headless Chromium and ffmpeg."""
