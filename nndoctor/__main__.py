import sys

try:
    from nndoctor.cli import main  # imports torch: seconds in which a Ctrl-C is likely
except KeyboardInterrupt:
    print("nndoctor: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
