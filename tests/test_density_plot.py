"""hessian.plot_density: a figure it makes keeps its axis labels inside the saved image."""

import numpy as np
import pytest

from tfminima import hessian as H


@pytest.mark.parametrize("labels", ["default", "long"])
def test_a_density_figure_keeps_its_labels_inside_the_image(tmp_path, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 30))
    res = H.slq(lambda v: (a + a.T) @ v, 30, runs=2, steps=12)
    ax = H.plot_density(res)
    if labels == "long":
        ax.set_ylabel("density of the Hessian's eigenvalues (log)")
        ax.set_xlabel("eigenvalue λ of the training-loss Hessian at the end point")
    fig = ax.figure
    fig.savefig(tmp_path / "density.png")  # no bbox_inches="tight": what a user's plain savefig gives
    renderer = fig.canvas.get_renderer()
    image = fig.bbox
    for text in (ax.xaxis.label, ax.yaxis.label):
        if not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        assert image.x0 <= box.x0 and box.x1 <= image.x1 and image.y0 <= box.y0 and box.y1 <= image.y1, text
    tight = fig.get_tightbbox(renderer)  # inches: everything drawn lies within the figure
    width, height = fig.get_size_inches()
    assert tight.x0 >= 0 and tight.y0 >= 0 and tight.x1 <= width and tight.y1 <= height
    plt.close(fig)
