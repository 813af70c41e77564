"""The pages in a real browser: Debian's chromium, headless, driven by Playwright for Python."""
