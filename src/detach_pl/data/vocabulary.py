"""The Opportunity++ kitchen's vocabulary: 14 open/close classes, 7 places, 37 ambient channels.

Written once and shared by the Opportunity++ reader (`detach_pl.data.opportunity`) and the
synthetic kitchen (`detach_pl.data.kitchen`), which copies the release's structure. Class names
are those of the `ML_Both_Arms` track of `label_legend.txt`; channel names those of columns
195–231 of `column_names.txt` (docs/datasets/opportunity.md). Place names are ours (the release
has none): the object of the classes' names, lower case without spaces ("door1" … "drawer3", the
synthetic kitchen's released spelling). None of these names enters a cache key.
"""

from __future__ import annotations

#: The places of the kitchen (K = 7 clusters of stage 1), in place-id order.
PLACE_NAMES: tuple[str, ...] = (
    "door1", "door2", "fridge", "dishwasher", "drawer1", "drawer2", "drawer3",
)

#: DETACH's 14 probe classes in class order, each with the id of the place it happens at.
CLASSES: tuple[tuple[str, int], ...] = (
    ("Open Door 1", 0),
    ("Open Door 2", 1),
    ("Close Door 1", 0),
    ("Close Door 2", 1),
    ("Open Fridge", 2),
    ("Close Fridge", 2),
    ("Open Dishwasher", 3),
    ("Close Dishwasher", 3),
    ("Open Drawer 1", 4),
    ("Close Drawer 1", 4),
    ("Open Drawer 2", 5),
    ("Close Drawer 2", 5),
    ("Open Drawer 3", 6),
    ("Close Drawer 3", 6),
)
#: Class names, in class-id order.
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in CLASSES)
#: Place id of each class.
CLASS_PLACE: tuple[int, ...] = tuple(place for _, place in CLASSES)

#: Reed switches of columns 195–207, in column order: column name and place id. The doors have
#: none (the release's doors carry accelerometers only).
REED_SWITCHES: tuple[tuple[str, int], ...] = (
    ("REED SWITCH DISHWASHER S1", 3),
    ("REED SWITCH FRIDGE S3", 2),
    ("REED SWITCH FRIDGE S2", 2),
    ("REED SWITCH FRIDGE S1", 2),
    ("REED SWITCH MIDDLEDRAWER S1", 5),
    ("REED SWITCH MIDDLEDRAWER S2", 5),
    ("REED SWITCH MIDDLEDRAWER S3", 5),
    ("REED SWITCH LOWERDRAWER S3", 6),
    ("REED SWITCH LOWERDRAWER S2", 6),
    ("REED SWITCH UPPERDRAWER", 4),
    ("REED SWITCH DISHWASHER S3", 3),
    ("REED SWITCH LOWERDRAWER S1", 6),
    ("REED SWITCH DISHWASHER S2", 3),
)
#: Three-axis ambient accelerometers of columns 208–231, in column order: unit name and place id
#: (−1: the lazy chair, at no place).
AMBIENT_ACCELEROMETERS: tuple[tuple[str, int], ...] = (
    ("DOOR1", 0),
    ("LAZYCHAIR", -1),
    ("DOOR2", 1),
    ("DISHWASHER", 3),
    ("UPPERDRAWER", 4),
    ("LOWERDRAWER", 6),
    ("MIDDLEDRAWER", 5),
    ("FRIDGE", 2),
)
#: Accelerometer axes, in column order.
AXES: tuple[str, ...] = ("X", "Y", "Z")

#: DETACH's ambient input: the names of columns 195–231 of `column_names.txt`, in file order.
AMBIENT_CHANNELS: tuple[str, ...] = tuple(name for name, _ in REED_SWITCHES) + tuple(
    f"Accelerometer {unit} acc{axis}" for unit, _ in AMBIENT_ACCELEROMETERS for axis in AXES
)
