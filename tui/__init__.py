"""tfminima-tui: a Textual app to configure, launch, watch and compare η/S experiments.

Reads run directories and starts ``tfminima run`` subprocesses; never imports TensorFlow.
Entry point: ``tfminima-tui [RUNS_DIR]`` (:func:`tui.app.main`).
"""
