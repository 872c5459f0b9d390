"""Checked versions (DESIGN section 16): the app a run leaves is built and rendered before it is
saved, and what fails goes back to the model."""
