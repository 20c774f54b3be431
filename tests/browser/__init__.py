"""Test helpers that drive a real browser (headless Chromium) without extra Python dependencies."""
