"""The 29 hand-bone classes in competition order, their colours and anatomy facts."""
from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "finger-1", "finger-2", "finger-3", "finger-4", "finger-5", "finger-6", "finger-7",
    "finger-8", "finger-9", "finger-10", "finger-11", "finger-12", "finger-13", "finger-14",
    "finger-15", "finger-16", "finger-17", "finger-18", "finger-19",
    "Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum",
    "Pisiform", "Radius", "Ulna",
)
NUM_CLASSES = len(CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

BONE_NAMES: tuple[str, ...] = (
    "thumb distal phalanx", "thumb proximal phalanx", "1st metacarpal",
    "index distal phalanx", "index middle phalanx", "index proximal phalanx", "2nd metacarpal",
    "middle distal phalanx", "middle middle phalanx", "middle proximal phalanx", "3rd metacarpal",
    "ring distal phalanx", "ring middle phalanx", "ring proximal phalanx", "4th metacarpal",
    "little distal phalanx", "little middle phalanx", "little proximal phalanx", "5th metacarpal",
    "below the thumb metacarpal", "below the index metacarpal", "below the middle metacarpal",
    "below ring + little metacarpals", "proximal row, thumb side", "proximal row, centre",
    "proximal row, little side", "on top of the triquetrum", "forearm, thumb side",
    "forearm, little-finger side",
)

# Customary RGB colours, same order as CLASSES.
COLORS: tuple[tuple[int, int, int], ...] = (
    (220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228), (0, 60, 100),
    (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30), (100, 170, 30), (220, 220, 0),
    (175, 116, 175), (250, 0, 30), (165, 42, 42), (255, 77, 255), (0, 226, 252), (182, 182, 255),
    (0, 82, 0), (120, 166, 157), (110, 76, 0), (174, 57, 255), (199, 100, 0), (72, 0, 118),
    (255, 179, 240), (0, 125, 92), (209, 0, 151), (188, 208, 182), (0, 220, 176),
)

# Rays from thumb to little finger, each listed tip -> base (labels).
RAYS: tuple[tuple[str, ...], ...] = (
    ("finger-1", "finger-2", "finger-3"),
    ("finger-4", "finger-5", "finger-6", "finger-7"),
    ("finger-8", "finger-9", "finger-10", "finger-11"),
    ("finger-12", "finger-13", "finger-14", "finger-15"),
    ("finger-16", "finger-17", "finger-18", "finger-19"),
)
# Rows across the hand, each listed thumb side -> little-finger side (labels).
ACROSS_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("distal phalanges", ("finger-1", "finger-4", "finger-8", "finger-12", "finger-16")),
    ("middle phalanges", ("finger-5", "finger-9", "finger-13", "finger-17")),
    ("proximal phalanges", ("finger-2", "finger-6", "finger-10", "finger-14", "finger-18")),
    ("metacarpals", ("finger-3", "finger-7", "finger-11", "finger-15", "finger-19")),
    ("distal carpal row", ("Trapezium", "Trapezoid", "Capitate", "Hamate")),
    ("proximal carpal row", ("Scaphoid", "Lunate", "Triquetrum")),
    ("forearm", ("Radius", "Ulna")),
)
# Neighbours along a ray or across a row: the label pairs an annotator confuses.
NEIGHBOUR_PAIRS: tuple[tuple[str, str], ...] = tuple(
    pair for group in [row for _, row in ACROSS_ROWS] + list(RAYS) for pair in zip(group, group[1:]))
FINGERTIPS: tuple[str, ...] = tuple(ray[0] for ray in RAYS)
METACARPALS: tuple[str, ...] = tuple(ray[-1] for ray in RAYS)
CARPALS: tuple[str, ...] = (
    "Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform",
)
FOREARM: tuple[str, ...] = ("Radius", "Ulna")
# The proximal carpal row (the wrist's radiocarpal joint lies just below it).
PROXIMAL_ROW: tuple[str, ...] = ("Scaphoid", "Lunate", "Triquetrum", "Pisiform")
SMALLEST: tuple[str, ...] = ("finger-16", "Trapezoid", "Pisiform")
HARDEST: tuple[str, ...] = ("Pisiform", "Trapezoid", "Triquetrum", "Trapezium", "Hamate", "finger-16")
