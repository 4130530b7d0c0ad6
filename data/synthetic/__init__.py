"""Tiny datasets of every backbone written in the official file formats, for tests and the demo.

Usage::

    python -m data.synthetic youcook2 --out DIR [--videos N] [--seed S] [--feature-dim D]
    python -m data.synthetic msrvtt   --out DIR [--videos N] [--seed S] [--feature-dim D]
    python -m data.synthetic mosi     --out DIR --format mmsa|univl|csd [--videos N] [--seed S] [--feature-dim D]
    python -m data.synthetic allinone-msrvtt --out DIR [--videos N] [--seed S]   (real mp4 files)
    python -m data.synthetic violet-msrvtt|msvd --out DIR [--videos N] [--seed S] [--image-size P]
    python -m data.synthetic tgif --task action|transition|frameqa --out DIR [--videos N] [--seed S] [--image-size P]

One writer module per backbone, each documenting the files it writes:

* :mod:`data.synthetic.univl`: YouCook2, MSR-VTT (UniVL's feature layout) and CMU-MOSI (three layouts);
* :mod:`data.synthetic.violet`: VIOLET's frame / DALL-E code pickles and json (MSR-VTT, TGIF-QA, MSVD-QA), and
  the raw official QA annotations that :mod:`data.violet.qa_convert` reads;
* :mod:`data.synthetic.allinone`: All-in-one's raw-video MSR-VTT (real H.264 mp4 files);
* :mod:`data.synthetic.base`: the captions, ids, features and file writers they share;
* :mod:`data.synthetic.cli`: the command line above (:func:`main`, also called in-process by the row launchers).

Output is a pure function of the arguments: the same arguments write byte-identical files (the mp4 bytes
depend on the bundled libx264 build).
"""

from data.synthetic.cli import main

__all__ = ["main"]
