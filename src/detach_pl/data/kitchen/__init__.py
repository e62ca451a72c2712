"""The synthetic kitchen generator, in focused parts.

``layout`` (classes, places, sensor columns, room geometry), ``config`` (the difficulty knobs),
``room`` (texture and sensor hardware of a seed), ``schedule`` (what the person does),
``sensors`` (ambient channels and their flaws), ``rendering`` (camera frames) and ``generator``
(one run). ``detach_pl.data.synthetic`` (its ``world`` module) re-exports the public names.
"""
