"""Command line: ``pesmith <verb> ...``, one module per verb group. Errors print one line and
exit with code 2.

This package is the composition root: the one part of pesmith that reaches into
``pesmith.search`` (the hull, the generated initial set, the search), lazily inside the verbs
that need it, and that hands the parallel map to labeling and the search; the library modules
take such pieces as arguments (``tests/test_packaging.py`` checks the layers). The verbs import
torch when they run, so ``pesmith --help`` stays quick.
"""

from .app import build_parser, main
from .common import ARGUMENT_PATHS, EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_USER_ERROR, write_json
from .evaluate import evaluate_command, print_metrics
from .hull import hull_command, parse_references, print_hull
from .label import generate_command, label_command, print_label_summary
from .plugins import print_plugins
from .search import check_not_plain_mpi, interrupted_search, print_search_summary, search_command, search_status
from .train import saved_after_interrupt, train_command
from .validate import validate_command

__all__ = [
    "ARGUMENT_PATHS",
    "EXIT_ALL_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "build_parser",
    "check_not_plain_mpi",
    "evaluate_command",
    "generate_command",
    "hull_command",
    "interrupted_search",
    "label_command",
    "main",
    "parse_references",
    "print_hull",
    "print_label_summary",
    "print_metrics",
    "print_plugins",
    "print_search_summary",
    "saved_after_interrupt",
    "search_command",
    "search_status",
    "train_command",
    "validate_command",
    "write_json",
]
