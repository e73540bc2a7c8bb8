"""SeqRank browser demo: ``python -m online.app`` (see launch.sh)."""
